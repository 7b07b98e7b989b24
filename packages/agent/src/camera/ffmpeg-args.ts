import type { ModelMetadata } from '@perch/shared';
import type { CameraSource } from './camera-config.js';
import type { FfmpegCapabilities } from './ffmpeg-capabilities.js';
import { withCredentials } from './url-credentials.js';

export interface FfmpegArgs {
  /** what follows `-i`; holds the password of a network source: never log it unredacted */
  input: string;
  inputOptions: string[];
  outputOptions: string[];
}

export interface FrameFormat {
  fps: number;
  /** the active model's input size: ffmpeg scales every frame to it */
  width: number;
  height: number;
  /** how the frame is fitted to that size (the model's metadata says); stretch by default */
  resize?: ResizeMode;
  /** decoder threads; 0 lets ffmpeg choose (see the camera config's decodeThreads) */
  decodeThreads?: number;
  /** where in each frame interval of the wall clock this camera's frame is taken, 0 to 1 (see rateFilter) */
  phase?: number;
}

export type ResizeMode = ModelMetadata['input']['resize'];

/**
 * The filter that fits any source frame to width x height. Letterbox pads in
 * rgb24, where odd offsets are fine (yuv420p would need even ones).
 */
export function fitFilter(width: number, height: number, resize: ResizeMode = 'stretch'): string {
  switch (resize) {
    case 'stretch':
      return `scale=${width}:${height}`;
    case 'letterbox':
      return `format=rgb24,scale=${width}:${height}:force_original_aspect_ratio=decrease,pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2`;
    case 'centre-crop':
      return `scale=${width}:${height}:force_original_aspect_ratio=increase,crop=${width}:${height}`;
  }
}

/** What a source needs at start that is not in the config: the password read from its file. */
export interface SourceSecrets {
  password?: string;
}

export type ArgsCapabilities = Pick<FfmpegCapabilities, 'rtspSocketTimeout' | 'logLevelTags' | 'passthroughOption'>;

const DEFAULT_CAPABILITIES: ArgsCapabilities = { rtspSocketTimeout: '-timeout', logLevelTags: true, passthroughOption: '-fps_mode' };

/**
 * How far the wall-clock anchor of the stream's timestamps may rise per
 * frame (s): 4 us, 0.1 ms/s at 25 fps, faster than a camera's clock drifts
 * from the box's (50 ppm is 0.05 ms/s) and far slower than decode jitter.
 */
const ANCHOR_CREEP_S = 0.000004;

/**
 * The frame-rate limit, keeping each frame's own timestamp. The wall clock
 * is cut into slots of one interval, shifted by `phase` of an interval, and
 * the first frame of each slot is taken; cameras sharing a model get phases
 * spread over the interval, so their frames reach the model one after
 * another rather than at once, whenever each ffmpeg started or restarted.
 *
 * A frame is placed in its slot by its stream timestamp `t` carried onto
 * the wall clock, not by when its decoding happened to finish: the anchor
 * (register 1) is wall clock minus `t` of the least delayed frame so far,
 * rising ANCHOR_CREEP_S a frame so it follows a camera clock slower than
 * the box's, and taken afresh when a frame is less delayed or more than a
 * second later (a jump in the timestamps). Placed by decode time, a camera
 * whose frames fell near a slot's start took one frame or the next, 40 ms
 * apart, as decoding jitter went (a third to half of one camera's frames in
 * 5 of 7 runs of the four-camera benchmark), onto the next camera's turn.
 * Frames without a timestamp are placed by the wall clock. Register 0 keeps
 * the last slot taken. ffmpeg's `fps` filter would instead re-stamp frames
 * onto its own grid and duplicate frames of a slower source.
 *
 * `showinfo` then logs each frame's number and stream timestamp, from which
 * the agent reads how long the frame took to reach it (see StreamClock).
 */
export function rateFilter(fps: number, phase = 0): string {
  const lag = 'time(0)-t';
  const anchor = `if(isnan(t)\\,0\\,st(1\\,if(eq(n\\,0)+lt(${lag}\\,ld(1))+gt(${lag}\\,ld(1)+1)\\,${lag}\\,ld(1)+${ANCHOR_CREEP_S})))`;
  const slot = `floor(if(isnan(t)\\,time(0)\\,t+ld(1))*${fps}-${Number(phase.toFixed(4))})`;
  return `select='${anchor}*0+if(gt(${slot}\\,ld(0))\\,st(0\\,${slot})*0+1\\,0)',showinfo=checksum=0`;
}

/**
 * ffmpeg does the frame rate and the scaling (cheaper than any JS), and
 * writes rgb24 frames of exactly width x height to stdout, whatever size the
 * source sends or changes to. A file and a lavfi pattern are paced with -re,
 * or they would be decoded as fast as the CPU allows; live input never is.
 */
export function ffmpegArgs(
  source: CameraSource,
  out: FrameFormat,
  caps: ArgsCapabilities = DEFAULT_CAPABILITIES,
  secrets: SourceSecrets = {},
): FfmpegArgs {
  // `level+` tags each line with its severity, which tells ffmpeg's fatal line from a passing warning, and
  // showinfo's per-frame lines (info) from both. An ffmpeg without tags gets the plain fps filter and no timestamps.
  const timed = caps.logLevelTags;
  const quiet = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', timed ? 'level+info' : 'warning', '-threads', String(out.decodeThreads ?? 1)];
  const rate = timed ? rateFilter(out.fps, out.phase) : `fps=${out.fps}`;
  const outputOptions = ['-an', '-sn', '-vf', `${rate},${fitFilter(out.width, out.height, out.resize)}`, ...(timed ? [caps.passthroughOption, 'passthrough'] : []), '-pix_fmt', 'rgb24', '-f', 'rawvideo'];
  switch (source.kind) {
    case 'file':
      return { input: source.path, inputOptions: [...quiet, ...(source.loop ? ['-stream_loop', '-1'] : []), '-re'], outputOptions };
    case 'synthetic':
      // At a camera's 25 fps (or more), so it is sampled as a camera is.
      return { input: `${source.pattern}=size=${out.width}x${out.height}:rate=${Math.max(25, out.fps)}`, inputOptions: [...quiet, '-re', '-f', 'lavfi'], outputOptions };
    case 'rtsp':
      return {
        input: withCredentials(source.url, source.username, secrets.password),
        inputOptions: [
          ...quiet,
          '-rtsp_transport',
          source.transport,
          caps.rtspSocketTimeout,
          String(source.timeoutMs * 1000),
          // Audio and metadata streams are not set up at all: less bandwidth from the camera.
          '-allowed_media_types',
          'video',
        ],
        outputOptions,
      };
    case 'mjpeg':
      return {
        input: withCredentials(source.url, source.username, secrets.password),
        inputOptions: [
          ...quiet,
          // HTTP's -timeout is in microseconds in every ffmpeg version.
          '-timeout',
          String(source.timeoutMs * 1000),
          // Multipart JPEG carries no timestamps: ffmpeg would assume 25 fps and fps= would keep
          // the wrong frames (2 of 10 per second for fps=5). Arrival time is the truth here.
          '-use_wallclock_as_timestamps',
          '1',
          '-f',
          'mpjpeg',
        ],
        outputOptions,
      };
    case 'v4l2':
      return {
        input: source.device,
        inputOptions: [
          ...quiet,
          '-f',
          'v4l2',
          ...(source.inputFormat !== undefined ? ['-input_format', source.inputFormat] : []),
          ...(source.framerate !== undefined ? ['-framerate', String(source.framerate)] : []),
          ...(source.width !== undefined && source.height !== undefined ? ['-video_size', `${source.width}x${source.height}`] : []),
        ],
        outputOptions,
      };
  }
}

/** The whole command line after the binary. */
export function ffmpegArgv(a: FfmpegArgs): string[] {
  return [...a.inputOptions, '-i', a.input, ...a.outputOptions, 'pipe:1'];
}
