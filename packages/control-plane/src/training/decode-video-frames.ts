/**
 * Decodes a video into raw RGB frames at a given size with ffmpeg, the same
 * `scale=W:H` + rgb24 path a camera pipeline uses to feed the model.
 */
import { spawn } from 'node:child_process';
import type { RgbImage } from './pet-park/rgb-image.js';

export async function decodeVideoFrames(videoPath: string, ffmpegPath: string, width: number, height: number): Promise<RgbImage[]> {
  for (const [key, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`decodeVideoFrames: ${key} must be a positive integer, got ${v}`);
  }
  const args = ['-v', 'error', '-nostdin', '-i', videoPath, '-vf', `scale=${width}:${height}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'];
  const chunks: Buffer[] = [];
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`decodeVideoFrames: ffmpeg exited with ${code}: ${stderr.trim()}`));
    });
  });
  const all = Buffer.concat(chunks);
  const frameBytes = width * height * 3;
  if (all.length % frameBytes !== 0) throw new Error(`decodeVideoFrames: ${all.length} bytes is not a whole number of ${width}x${height} frames`);
  return Array.from({ length: all.length / frameBytes }, (_, i) => ({
    width,
    height,
    data: new Uint8Array(all.buffer, all.byteOffset + i * frameBytes, frameBytes),
  }));
}
