/**
 * 1080p25 H.264 clips that decode like CCTV cameras' streams, made with
 * the bundled ffmpeg from its own test pattern (nothing downloaded) and
 * cached in the temp folder. Cameras send Main profile (CABAC, deblocking)
 * at a few Mbit/s; decode cost depends on that, so the clips are encoded the
 * same way rather than with x264's cheapest settings, which would make the
 * agent look better than it will be on a real camera (an ultrafast clip
 * decodes with about 30 % less CPU here). Light temporal noise stands in for sensor
 * grain so the bitrate is spent as a camera's would be.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The clips of `count` cameras: one format, a file each. */
export interface CameraClips {
  width: number;
  height: number;
  fps: number;
  encoding: string;
  clips: { path: string; seconds: number; cached: boolean }[];
}

const CLIP = { width: 1920, height: 1080, fps: 25, gopSeconds: 2, bitrate: '4M' } as const;
const ENCODING = `H.264 Main, x264 veryfast, ${CLIP.bitrate}bit/s, GOP ${CLIP.gopSeconds} s, testsrc2 + temporal noise`;
/**
 * The first camera's clip length; camera k's is k seconds longer, so their
 * loop points never meet. Long enough that the four-camera benchmark's
 * warm-up and 30 s measurement end before the first loop: at a loop the
 * decoder is flushed and hands out its held-back frames early, which moves
 * the agent's timestamp anchor once (a live camera never loops).
 */
const BASE_SECONDS = 60;

/** The ffmpeg the agent uses by default (@ffmpeg-installer/ffmpeg), unless PERCH_FFMPEG_PATH names another. */
export function bundledFfmpegPath(): string {
  const fromEnv = process.env['PERCH_FFMPEG_PATH'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const installer = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path?: unknown };
  if (typeof installer.path !== 'string') throw new Error('@ffmpeg-installer/ffmpeg gave no ffmpeg path; set PERCH_FFMPEG_PATH');
  return installer.path;
}

/**
 * One clip per camera, as `count` cameras that have nothing to do with each
 * other would send: camera k's keyframes come k/count of a GOP after camera
 * 0's and its clip is k seconds longer. Cameras reading one shared file,
 * started together, would decode their keyframes (several times a P-frame's
 * cost) and reopen the file at the loop point all at the same moment, every
 * time; that burst, which no real site has, showed as the benchmark's worst
 * frame ages. Each clip is encoded once (30-60 s on 2 cores) and reused.
 */
export async function cameraClips(workDir: string, count: number): Promise<CameraClips> {
  const clips: CameraClips['clips'] = [];
  for (let k = 0; k < count; k++) clips.push(await encodeClip(workDir, BASE_SECONDS + k, (k / count) * CLIP.gopSeconds));
  return { width: CLIP.width, height: CLIP.height, fps: CLIP.fps, encoding: ENCODING, clips };
}

async function encodeClip(workDir: string, seconds: number, keyframeOffset: number): Promise<CameraClips['clips'][number]> {
  const offset = Number(keyframeOffset.toFixed(3));
  const file = path.join(workDir, `camera-${CLIP.width}x${CLIP.height}p${CLIP.fps}-${seconds}s-main-${CLIP.bitrate}-key${offset}.mp4`);
  const clip = { path: file, seconds };
  if (existsSync(file)) return { ...clip, cached: true };
  await mkdir(workDir, { recursive: true });
  const tmp = `${file}.tmp.mp4`;
  await run(
    bundledFfmpegPath(),
    [
      '-y', '-hide_banner', '-nostdin', '-loglevel', 'error',
      '-f', 'lavfi', '-i', `testsrc2=size=${CLIP.width}x${CLIP.height}:rate=${CLIP.fps}`,
      '-t', String(seconds),
      '-vf', 'noise=alls=6:allf=t',
      '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-pix_fmt', 'yuv420p',
      '-b:v', CLIP.bitrate, '-maxrate', CLIP.bitrate, '-bufsize', '8M',
      // Keyframes at `offset` and every GOP after it (the first frame is one anyway); x264's own limit is set beyond that.
      '-force_key_frames', `expr:gte(t,${offset}+n_forced*${CLIP.gopSeconds})`, '-g', String(CLIP.fps * CLIP.gopSeconds * 4),
      '-an', tmp,
    ],
    { timeout: 300_000 },
  );
  await rename(tmp, file);
  return { ...clip, cached: false };
}
