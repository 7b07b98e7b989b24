import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { makeTestVideo } from '../test-support/video-file.js';
import { FfmpegCamera, type CameraIncident } from './ffmpeg-camera.js';
import { ffmpegCapabilities } from './ffmpeg-capabilities.js';

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
    const cam = new FfmpegCamera({ id: 'synth', fps: 10, stallTimeoutMs: 20_000, source: { kind: 'synthetic', pattern: 'testsrc2' } }, { ffmpegPath, width: 16, height: 8 }, log);
    const frames = await collect(cam, 3);
    expect(frames.every((f) => f.length === 16 * 8 * 3)).toBe(true);
    // testsrc2 is colourful: not a blank frame.
    expect(new Set(frames[0]).size).toBeGreaterThan(4);
    expect(cam.state()).toMatchObject({ cameraId: 'synth', state: 'offline', restarts: 0 });
  });

  it('loops a video file', async () => {
    const cam = new FfmpegCamera({ id: 'file', fps: 10, stallTimeoutMs: 20_000, source: { kind: 'file', path: video, loop: true } }, { ffmpegPath, width: 8, height: 8 }, log);
    let online = false;
    cam.on('state', (s) => (online ||= s.state === 'online'));
    const frames = await collect(cam, 8);
    expect(frames.length).toBeGreaterThanOrEqual(8);
    expect(online).toBe(true);
    expect(cam.state().restarts).toBe(0);
  });

  // The bundled ffmpeg (4.x, -vsync) and, where the box has one, the system's (5.x on, -fps_mode).
  const ffmpegs = [ffmpegPath, ...(existsSync('/usr/bin/ffmpeg') && ffmpegPath !== '/usr/bin/ffmpeg' ? ['/usr/bin/ffmpeg'] : [])];
  it.each(ffmpegs)('%s: takes each frame of a 25 fps file at most once at 5 fps, and says how late each arrived by the stream clock', async (ffmpeg) => {
    const clip = join(dir.path, 'clip25.mp4');
    if (!existsSync(clip)) await makeTestVideo(ffmpegPath, clip, { seconds: 2, rate: 25 });
    const cam = new FfmpegCamera({ id: 'rate', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'file', path: clip, loop: false } }, { ffmpegPath: ffmpeg, width: 64, height: 48 }, log);
    const frames: Uint8Array[] = [];
    const delays: number[] = [];
    cam.on('frame', (f) => frames.push(f));
    cam.on('frame-delay', (ms) => delays.push(ms));
    cam.start();
    try {
      // Played once: ffmpeg ends after 2 s of stream time.
      await waitFor('the clip to end', () => cam.state().lastError?.includes('no more frames'), 30_000);
    } finally {
      await cam.stop();
    }
    // 2 s at 5 fps: 10 frames (one more when the first lands just before a slot starts), not the 50 of the source.
    expect(frames.length).toBeGreaterThanOrEqual(9);
    expect(frames.length).toBeLessThanOrEqual(12);
    // One delay per frame, the quickest one 0 by definition.
    expect(delays).toHaveLength(frames.length);
    expect(Math.min(...delays)).toBe(0);
    expect(delays.every((d) => d >= 0 && d < 2000)).toBe(true);
  });

  it('a dead camera goes offline with ffmpeg\'s reason and is restarted', async () => {
    const cam = new FfmpegCamera(
      { id: 'dead', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'file', path: join(dir.path, 'missing.mp4'), loop: true } },
      { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 50 } },
      log,
    );
    cam.start();
    try {
      const state = await waitFor('two restarts', () => (cam.state().restarts >= 2 ? cam.state() : undefined));
      expect(state.lastError).toMatch(/missing\.mp4: No such file or directory/);
      expect(state).toMatchObject({ state: 'offline', errorKind: 'not-found', framesPerSecond: 0, stalls: 0 });
    } finally {
      await cam.stop();
    }
    expect(cam.state().state).toBe('offline');
  });

  it('a V4L2 device that is not there: not-found, retried', async () => {
    const device = '/dev/video-perch-missing';
    const cam = new FfmpegCamera(
      { id: 'usb', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'v4l2', device, width: 640, height: 480, framerate: 15 } },
      { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 50 } },
      log,
    );
    cam.start();
    try {
      const state = await waitFor('a restart', () => (cam.state().restarts >= 1 ? cam.state() : undefined));
      expect(state).toMatchObject({ state: 'offline', errorKind: 'not-found' });
      expect(state.lastError).toContain(`${device}: No such file or directory`);
    } finally {
      await cam.stop();
    }
  });

  it('a codec ffmpeg has no decoder for: unsupported-codec', async () => {
    // A real Matroska file whose codec id no ffmpeg knows (same length, so the file stays valid).
    const mkv = join(dir.path, 'clip.mkv');
    await makeTestVideo(ffmpegPath, mkv, { seconds: 0.3, rate: 10 });
    const bytes = await readFile(mkv);
    const at = bytes.indexOf('V_MPEG4/ISO/AVC');
    expect(at).toBeGreaterThan(0);
    bytes.write('V_PERCH/NO/SUCH', at, 'latin1');
    const unknown = join(dir.path, 'unknown-codec.mkv');
    await writeFile(unknown, bytes);
    const cam = new FfmpegCamera(
      { id: 'odd', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'file', path: unknown, loop: true } },
      { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 50 } },
      log,
    );
    const incidents: CameraIncident[] = [];
    cam.on('incident', (i) => incidents.push(i));
    cam.start();
    try {
      await waitFor('an incident', () => incidents.length >= 1);
      expect(incidents[0]).toMatchObject({ kind: 'unsupported-codec', stalled: false });
      expect(incidents[0]?.message).toMatch(/Decoder \(codec none\) not found/);
    } finally {
      await cam.stop();
    }
  });

  it('an ffmpeg path that does not exist: a clear error, retried, no crash', async () => {
    const cam = new FfmpegCamera(
      { id: 'nobin', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'synthetic', pattern: 'testsrc2' } },
      { ffmpegPath: join(dir.path, 'no-ffmpeg-here'), width: 8, height: 8, restart: { minMs: 10, maxMs: 50 } },
      log,
    );
    cam.start();
    try {
      const state = await waitFor('a restart', () => (cam.state().restarts >= 1 ? cam.state() : undefined));
      expect(state).toMatchObject({ state: 'offline', errorKind: 'unknown' });
      expect(state.lastError).toMatch(/cannot run ffmpeg at .*no-ffmpeg-here: ENOENT/);
    } finally {
      await cam.stop();
    }
  });
});

describe('the bundled ffmpeg', () => {
  it('is 4.x: -stimeout is the RTSP socket timeout, and it cannot resolve host names', async () => {
    const caps = await ffmpegCapabilities(ffmpegInstaller.path);
    expect(caps.version).toMatch(/^ffmpeg version/);
    expect(caps.rtspSocketTimeout).toBe('-stimeout');
    expect(caps.resolvesHostNames).toBe(false);
    expect(caps.logLevelTags).toBe(true);
    // -fps_mode came with 5.1; here frames keep their timestamps through -vsync.
    expect(caps.passthroughOption).toBe('-vsync');
    if (existsSync('/usr/bin/ffmpeg')) {
      const system = await ffmpegCapabilities('/usr/bin/ffmpeg');
      const [major = 0, minor = 0] = (/^ffmpeg version (\d+)\.(\d+)/.exec(system.version)?.slice(1) ?? []).map(Number);
      if (major * 100 + minor >= 501) expect(system.passthroughOption).toBe('-fps_mode');
    }
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
      const quick = new FfmpegCamera({ id: 'quick', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'synthetic', pattern: 'testsrc2' } }, { ffmpegPath, width: 8, height: 8 }, log);
      let frames = 0;
      quick.on('frame', () => frames++);
      quick.start();
      await quick.stop();
      expect(quick.state().state).toBe('offline');
      expect(frames).toBe(0);
      expect(await ffmpegChildren()).toBe(0);

      const once = new FfmpegCamera({ id: 'once', fps: 10, stallTimeoutMs: 20_000, source: { kind: 'file', path: video, loop: false } }, { ffmpegPath, width: 8, height: 8, restart: { minMs: 10, maxMs: 20 } }, log);
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
