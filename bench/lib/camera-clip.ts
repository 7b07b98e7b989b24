/**
 * A 1080p25 H.264 clip that decodes like a CCTV camera's stream, made with
 * the bundled ffmpeg from its own test pattern (nothing downloaded) and
 * cached in the temp folder. Cameras send Main profile (CABAC, deblocking)
 * at a few Mbit/s; decode cost depends on that, so the clip is encoded the
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

export interface CameraClip {
  path: string;
  width: number;
  height: number;
  fps: number;
  seconds: number;
  encoding: string;
}

const CLIP = { width: 1920, height: 1080, fps: 25, seconds: 10, bitrate: '4M' } as const;
const ENCODING = `H.264 Main, x264 veryfast, ${CLIP.bitrate}bit/s, GOP 2 s, testsrc2 + temporal noise`;

/** The ffmpeg the agent uses by default (@ffmpeg-installer/ffmpeg), unless PERCH_FFMPEG_PATH names another. */
export function bundledFfmpegPath(): string {
  const fromEnv = process.env['PERCH_FFMPEG_PATH'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const installer = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path?: unknown };
  if (typeof installer.path !== 'string') throw new Error('@ffmpeg-installer/ffmpeg gave no ffmpeg path; set PERCH_FFMPEG_PATH');
  return installer.path;
}

/** Encodes the clip once (about 10 s on 2 cores) and reuses it afterwards. */
export async function cameraClip(workDir: string): Promise<CameraClip & { cached: boolean }> {
  const file = path.join(workDir, `camera-${CLIP.width}x${CLIP.height}p${CLIP.fps}-${CLIP.seconds}s-main-${CLIP.bitrate}.mp4`);
  const clip = { path: file, width: CLIP.width, height: CLIP.height, fps: CLIP.fps, seconds: CLIP.seconds, encoding: ENCODING };
  if (existsSync(file)) return { ...clip, cached: true };
  await mkdir(workDir, { recursive: true });
  const tmp = `${file}.tmp.mp4`;
  await run(
    bundledFfmpegPath(),
    [
      '-y', '-hide_banner', '-nostdin', '-loglevel', 'error',
      '-f', 'lavfi', '-i', `testsrc2=size=${CLIP.width}x${CLIP.height}:rate=${CLIP.fps}`,
      '-t', String(CLIP.seconds),
      '-vf', 'noise=alls=6:allf=t',
      '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-pix_fmt', 'yuv420p',
      '-b:v', CLIP.bitrate, '-maxrate', CLIP.bitrate, '-bufsize', '8M', '-g', String(CLIP.fps * 2),
      '-an', tmp,
    ],
    { timeout: 300_000 },
  );
  await rename(tmp, file);
  return { ...clip, cached: false };
}
