import type { CameraSource } from '../config/agent-config.js';

export interface FfmpegArgs {
  input: string;
  inputOptions: string[];
  outputOptions: string[];
}

/**
 * ffmpeg does the frame rate and the scaling (cheaper than any JS), and
 * writes rgb24 frames of exactly width x height to stdout. A file must be
 * paced with -re or it would be decoded as fast as the CPU allows; so must
 * a lavfi pattern. Live input (RTSP, later) must never get -re.
 */
export function ffmpegArgs(source: CameraSource, fps: number, width: number, height: number): FfmpegArgs {
  const quiet = ['-hide_banner', '-nostdin', '-loglevel', 'warning'];
  const outputOptions = ['-an', '-vf', `fps=${fps},scale=${width}:${height}`, '-pix_fmt', 'rgb24', '-f', 'rawvideo'];
  switch (source.kind) {
    case 'file':
      return { input: source.path, inputOptions: [...quiet, ...(source.loop ? ['-stream_loop', '-1'] : []), '-re'], outputOptions };
    case 'synthetic':
      return { input: `${source.pattern}=size=${width}x${height}:rate=${fps}`, inputOptions: [...quiet, '-re', '-f', 'lavfi'], outputOptions };
  }
}
