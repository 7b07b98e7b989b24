import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { describe, expect, it } from 'vitest';
import { rateFilter } from './ffmpeg-args.js';

const bundled = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
// The bundled ffmpeg (4.x) and, where the box has one, the system's (5.x on).
const ffmpegs = [bundled, ...(existsSync('/usr/bin/ffmpeg') && bundled !== '/usr/bin/ffmpeg' ? ['/usr/bin/ffmpeg'] : [])];

const SOURCE_FPS = 25;
const FPS = 5;
const FRAMES = 60;
const SIZE = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * Feeds ffmpeg a 25 fps y4m stream through a pipe (timestamps n/25 s,
 * whatever the arrival), frame k written at a wall-clock time of our
 * choosing, and returns the timestamps of the frames rateFilter took.
 */
async function takenTimestamps(ffmpeg: string, writeAt: (k: number) => number): Promise<number[]> {
  const child = spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'level+info', '-f', 'yuv4mpegpipe', '-i', 'pipe:0', '-an', '-vf', rateFilter(FPS), '-f', 'null', '-'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (t: string) => (stderr += t));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  child.stdin.write(`YUV4MPEG2 W${SIZE} H${SIZE} F${SOURCE_FPS}:1 Ip A1:1 C420jpeg\n`);
  const frame = Buffer.concat([Buffer.from('FRAME\n'), Buffer.alloc((SIZE * SIZE * 3) / 2, 128)]);
  for (let k = 0; k < FRAMES; k++) {
    await sleep(writeAt(k) - Date.now());
    child.stdin.write(frame);
  }
  child.stdin.end();
  expect(await closed).toBe(0);
  return [...stderr.matchAll(/pts_time:([\d.]+)/g)].map((m) => Number(m[1]));
}

describe('the frame-rate limit places frames by their timestamps (real ffmpeg)', () => {
  it.each(ffmpegs)('%s: frames whose arrival jitters across a slot boundary are still taken every fifth, not one early and one late', async (ffmpeg) => {
    // Every fifth source frame is due 0.2 s apart; those frames arrive alternately 8 ms before and after a
    // wall-clock slot boundary (the others mid-interval), as decoding jitter would have them.
    const slotMs = 1000 / FPS;
    const firstBoundary = (Math.floor(Date.now() / slotMs) + 3) * slotMs;
    const start = firstBoundary - 5 * (1000 / SOURCE_FPS);
    const jitter = (k: number) => (k % 5 === 0 ? ((k / 5) % 2 === 0 ? -8 : 8) : 0);
    const taken = await takenTimestamps(ffmpeg, (k) => start + k * (1000 / SOURCE_FPS) + jitter(k));
    expect(taken.length).toBeGreaterThanOrEqual(8);
    // The first frames set the anchor; from there on every gap is one interval of stream time.
    const gaps = taken.slice(2).map((t, i) => Number((t - (taken[i + 1] ?? 0)).toFixed(3)));
    expect(gaps.every((g) => g === 1 / FPS), `gaps ${gaps.join(' ')}`).toBe(true);
  });
});
