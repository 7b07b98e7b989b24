import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { makeTestVideo } from '../test-support/video-file.js';
import { FfmpegCamera } from './ffmpeg-camera.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const log = new CapturedLog('warn').logger;

describe('ffmpeg camera (real ffmpeg)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let video: string;
  beforeAll(async () => {
    dir = await tempDir();
    video = join(dir.path, 'clip.mp4');
    // 0.4 s of video: six frames at 5 fps take well over one pass, so looping is exercised.
    await makeTestVideo(ffmpegPath, video, { seconds: 0.4, rate: 10 });
  });
  afterAll(() => dir.remove());

  async function collect(cam: FfmpegCamera, n: number): Promise<Uint8Array[]> {
    const frames: Uint8Array[] = [];
    cam.on('frame', (f) => frames.push(f));
    cam.start();
    try {
      await waitFor(`${n} frames from ${cam.id}`, () => frames.length >= n);
    } finally {
      await cam.stop();
    }
    return frames;
  }

  it('reads a synthetic pattern as rgb24 frames of the requested size', async () => {
    const cam = new FfmpegCamera({ id: 'synth', fps: 10, source: { kind: 'synthetic', pattern: 'testsrc2' } }, { ffmpegPath, width: 16, height: 8 }, log);
    const frames = await collect(cam, 3);
    expect(frames.every((f) => f.length === 16 * 8 * 3)).toBe(true);
    // testsrc2 is colourful: not a blank frame.
    expect(new Set(frames[0]).size).toBeGreaterThan(4);
    expect(cam.state()).toMatchObject({ cameraId: 'synth', state: 'offline', restarts: 0 });
  });

  it('loops a video file', async () => {
    const cam = new FfmpegCamera({ id: 'file', fps: 10, source: { kind: 'file', path: video, loop: true } }, { ffmpegPath, width: 8, height: 8 }, log);
    let online = false;
    cam.on('state', (s) => (online ||= s.state === 'online'));
    const frames = await collect(cam, 8);
    expect(frames.length).toBeGreaterThanOrEqual(8);
    expect(online).toBe(true);
    expect(cam.state().restarts).toBe(0);
  });

  it('a dead camera goes offline with ffmpeg\'s reason and is restarted', async () => {
    const cam = new FfmpegCamera(
      { id: 'dead', fps: 5, source: { kind: 'file', path: join(dir.path, 'missing.mp4'), loop: true } },
      { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 50 } },
      log,
    );
    cam.start();
    try {
      const state = await waitFor('two restarts', () => (cam.state().restarts >= 2 ? cam.state() : undefined));
      expect(state.lastError).toMatch(/missing\.mp4: No such file or directory/);
      expect(state.framesPerSecond).toBe(0);
    } finally {
      await cam.stop();
    }
    expect(cam.state().state).toBe('offline');
  });
});

/** ffmpeg processes whose parent is this process (Linux /proc); 0 where /proc is missing. */
async function ffmpegChildren(): Promise<number> {
  let n = 0;
  const entries = await readdir('/proc').catch(() => [] as string[]);
  for (const pid of entries.filter((e) => /^\d+$/.test(e))) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
    if (m && m[1] === 'ffmpeg' && Number(m[2]) === process.pid) n++;
  }
  return n;
}

describe('ffmpeg camera start/stop', () => {
  it('a stop right after start leaves no ffmpeg running, and a file without loop plays once', async () => {
    const dir = await tempDir();
    try {
      const video = join(dir.path, 'once.mp4');
      await makeTestVideo(ffmpegPath, video, { seconds: 0.3, rate: 10 });
      const quick = new FfmpegCamera({ id: 'quick', fps: 5, source: { kind: 'synthetic', pattern: 'testsrc2' } }, { ffmpegPath, width: 8, height: 8 }, log);
      let frames = 0;
      quick.on('frame', () => frames++);
      quick.start();
      await quick.stop();
      expect(quick.state().state).toBe('offline');
      expect(frames).toBe(0);
      expect(await ffmpegChildren()).toBe(0);

      const once = new FfmpegCamera({ id: 'once', fps: 10, source: { kind: 'file', path: video, loop: false } }, { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 20 } }, log);
      let got = 0;
      once.on('frame', () => got++);
      once.start();
      const ended = await waitFor('end of file', () => (once.state().lastError?.includes('no more frames') ? once.state() : undefined));
      expect(ended).toMatchObject({ state: 'offline', restarts: 0 });
      expect(got).toBeGreaterThan(0);
      await once.stop();
    } finally {
      await dir.remove();
    }
  });
});
