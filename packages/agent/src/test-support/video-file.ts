import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** Writes a short real video (H.264 in MP4) with ffmpeg's own test pattern, or another lavfi source (`color=c=black`). */
export async function makeTestVideo(ffmpegPath: string, path: string, opts: { seconds?: number; size?: string; rate?: number; pattern?: string } = {}): Promise<void> {
  const { seconds = 1, size = '64x48', rate = 10, pattern = 'testsrc2' } = opts;
  const source = pattern.includes('=') ? `${pattern}:size=${size}:rate=${rate}` : `${pattern}=size=${size}:rate=${rate}`;
  await promisify(execFile)(ffmpegPath, [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', source,
    '-t', String(seconds), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', path,
  ]);
}
