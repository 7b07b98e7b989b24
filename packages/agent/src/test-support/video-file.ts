import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** Writes a short real video (H.264 in MP4) with ffmpeg's own test pattern. */
export async function makeTestVideo(ffmpegPath: string, path: string, opts: { seconds?: number; size?: string; rate?: number } = {}): Promise<void> {
  const { seconds = 1, size = '64x48', rate = 10 } = opts;
  await promisify(execFile)(ffmpegPath, [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}`,
    '-t', String(seconds), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', path,
  ]);
}
