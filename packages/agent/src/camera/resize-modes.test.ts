import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { type ResizeMode } from './ffmpeg-args.js';
import { FfmpegCamera } from './ffmpeg-camera.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const log = new CapturedLog('warn').logger;
const W = 32;
const H = 32;

/** rgb of pixel (x, y) of an rgb24 frame W wide */
function px(f: Uint8Array, x: number, y: number): [number, number, number] {
  const i = (y * W + x) * 3;
  return [f[i] ?? -1, f[i + 1] ?? -1, f[i + 2] ?? -1];
}
const isRed = ([r, g, b]: [number, number, number]) => r > 180 && g < 70 && b < 70;
const isBlue = ([r, g, b]: [number, number, number]) => b > 180 && r < 70 && g < 70;
const isBlack = ([r, g, b]: [number, number, number]) => r < 30 && g < 30 && b < 30;

describe('fitting a camera frame to the model input (real ffmpeg)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let clip: string;
  beforeAll(async () => {
    dir = await tempDir();
    clip = join(dir.path, 'wide.mp4');
    // A 3:1 frame: red, with a blue band over its left sixth.
    await promisify(execFile)(ffmpegPath, [
      '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'color=red:size=360x120:rate=10:duration=1',
      '-f', 'lavfi', '-i', 'color=blue:size=60x120:rate=10:duration=1', '-filter_complex', '[0][1]overlay=0:0',
      '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-y', clip,
    ]);
  });
  afterAll(() => dir.remove());

  async function frameWith(resize: ResizeMode): Promise<Uint8Array> {
    const cam = new FfmpegCamera({ id: resize, fps: 5, stallTimeoutMs: 20_000, source: { kind: 'file', path: clip, loop: true } }, { ffmpegPath, width: W, height: H, resize }, log);
    let frame: Uint8Array | undefined;
    cam.on('frame', (f) => (frame ??= f));
    cam.start();
    try {
      return await waitFor(`a ${resize} frame`, () => frame);
    } finally {
      await cam.stop();
    }
  }

  it('stretch squeezes the whole frame: the blue band stays, no borders', async () => {
    const f = await frameWith('stretch');
    expect(isBlue(px(f, 1, 16))).toBe(true);
    expect(isRed(px(f, 30, 0))).toBe(true);
    expect(isRed(px(f, 16, 31))).toBe(true);
  });

  it('letterbox keeps the aspect ratio and pads with black above and below', async () => {
    const f = await frameWith('letterbox');
    // 360x120 in 32x32 is about 32x11: black rows at the top and bottom, the picture in the middle.
    expect(isBlack(px(f, 16, 0))).toBe(true);
    expect(isBlack(px(f, 16, 31))).toBe(true);
    expect(isRed(px(f, 20, 16))).toBe(true);
    expect(isBlue(px(f, 1, 16))).toBe(true);
  });

  it('centre-crop fills the input from the middle: the left band is cut away', async () => {
    const f = await frameWith('centre-crop');
    for (const [x, y] of [[0, 0], [1, 16], [31, 31], [16, 16]] as const) expect(isRed(px(f, x, y))).toBe(true);
  });
});
