import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import type { CameraHealth } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultServer } from '../test-support/fault-servers.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { RtspTestServer } from '../test-support/rtsp-server.js';
import { smpteMismatch } from '../test-support/smpte-bars.js';
import type { CameraConfig } from './camera-config.js';
import { FfmpegCamera, type CameraIncident, type FfmpegCameraOptions } from './ffmpeg-camera.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const W = 56;
const H = 42;
const PASSWORD = 'p@ss:w/rd';

type RtspSource = Extract<CameraConfig['source'], { kind: 'rtsp' }>;
const rtsp = (url: string, more: Partial<RtspSource> = {}): RtspSource => ({ kind: 'rtsp', url, transport: 'tcp', timeoutMs: 5000, ...more });

/**
 * Against GStreamer's RTSP server (a real H.264 stream over RTSP/TCP). These
 * tests need it installed: without it they fail and say what to install.
 */
describe('RTSP camera (real ffmpeg, GStreamer RTSP server)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let passwordFile: string;
  let wrongPasswordFile: string;

  beforeAll(async () => {
    dir = await tempDir();
    passwordFile = join(dir.path, 'password');
    wrongPasswordFile = join(dir.path, 'wrong');
    await writeFile(passwordFile, `${PASSWORD}\n`);
    await writeFile(wrongPasswordFile, 'guess\n');
  });
  afterAll(() => dir.remove());

  function camera(source: RtspSource, opts: Partial<FfmpegCameraOptions> & { stallTimeoutMs?: number } = {}, log = new CapturedLog('warn')) {
    const { stallTimeoutMs = 20_000, ...rest } = opts;
    const cam = new FfmpegCamera({ id: 'gate', fps: 5, stallTimeoutMs, source }, { ffmpegPath, width: W, height: H, restart: { minMs: 50, maxMs: 500 }, ...rest }, log.logger);
    const frames: Uint8Array[] = [];
    const incidents: CameraIncident[] = [];
    const states: CameraHealth[] = [];
    cam.on('frame', (f) => frames.push(f));
    cam.on('incident', (i) => incidents.push(i));
    cam.on('state', (s) => states.push(s.state));
    return { cam, frames, incidents, states };
  }

  it('streams H.264 over RTSP/TCP with a password from a file, by host name; the password is never logged', async () => {
    const server = await RtspTestServer.start({ user: 'viewer', password: PASSWORD });
    const log = new CapturedLog('debug');
    // `localhost`: the bundled ffmpeg cannot resolve names, the camera does it for it.
    const { cam, frames } = camera(rtsp(`rtsp://localhost:${server.port}/cam`, { username: 'viewer', passwordFile }), {}, log);
    try {
      cam.start();
      await waitFor('frames', () => frames.length >= 5);
      expect(frames.map((f) => smpteMismatch(f, W, H)).filter((m) => m !== null)).toEqual([]);
      expect(cam.state()).toMatchObject({ state: 'online', restarts: 0, stalls: 0 });
    } finally {
      await cam.stop();
      await server.stop();
    }
    const logged = JSON.stringify(log.lines);
    expect(logged).toContain('viewer:***@');
    expect(logged).not.toContain('p@ss');
    expect(logged).not.toContain(encodeURIComponent(PASSWORD));
  });

  it('wrong password: unauthorized; unknown path: not-found', async () => {
    const server = await RtspTestServer.start({ user: 'viewer', password: PASSWORD });
    try {
      for (const [source, kind, text, secret] of [
        [rtsp(server.url(), { username: 'viewer', passwordFile: wrongPasswordFile }), 'unauthorized', '401 Unauthorized', 'guess'],
        [rtsp(server.url('/nope'), { username: 'viewer', passwordFile }), 'not-found', '404 Not Found', encodeURIComponent(PASSWORD)],
      ] as const) {
        const { cam, incidents } = camera(source);
        cam.start();
        try {
          const incident = await waitFor(`${kind}`, () => incidents[0]);
          expect(incident.kind).toBe(kind);
          // ffmpeg names the URL, credentials and all: the message has them masked.
          expect(incident.message).toContain(`${text}`);
          expect(incident.message).toContain('viewer:***@');
          expect(incident.message).not.toContain(secret);
          expect(cam.state()).toMatchObject({ state: 'offline', errorKind: kind });
        } finally {
          await cam.stop();
        }
      }
    } finally {
      await server.stop();
    }
  });

  it('the server dies and comes back on the same port: offline (refused) meanwhile, then degraded, then online', async () => {
    const server = await RtspTestServer.start();
    const { cam, frames, incidents, states } = camera(rtsp(server.url()), { health: { recoveryMs: 1500 } });
    try {
      cam.start();
      await waitFor('online', () => states.at(-1) === 'online');
      await server.kill();
      await waitFor('refused while the server is down', () => incidents.some((i) => i.kind === 'refused'));
      expect(states.at(-1)).toBe('offline');
      const before = frames.length;
      await server.restart();
      await waitFor('frames again', () => frames.length >= before + 3);
      await waitFor('online after the recovery period', () => states.at(-1) === 'online');
      expect(states).toContain('degraded');
      expect(cam.state().restarts).toBeGreaterThanOrEqual(1);
      expect(cam.state().stalls).toBe(0);
    } finally {
      await cam.stop();
      await server.stop();
    }
  });

  it('a frozen server: the stall watchdog or ffmpeg\'s own timeout ends the run, reconnects time out, the camera recovers when it thaws', async () => {
    const server = await RtspTestServer.start();
    // One camera whose stall timeout is shorter than ffmpeg's socket timeout (the watchdog notices
    // the freeze), one the other way round (ffmpeg notices it, and says so).
    // ffmpeg's timeout also bounds the wait for the first frame, which a loaded box (the suite runs two files at
    // a time) can take more than a second to serve: 2 s, not less, and a generous hang guard for the first frames.
    const watched = camera(rtsp(server.url(), { timeoutMs: 4000 }), { stallTimeoutMs: 1500 });
    const timed = camera(rtsp(server.url(), { timeoutMs: 2000 }), { stallTimeoutMs: 20_000 });
    try {
      watched.cam.start();
      timed.cam.start();
      await waitFor(
        'frames on both',
        () => watched.frames.length >= 2 && timed.frames.length >= 2,
        60_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message} (watched ${watched.frames.length}, timed ${timed.frames.length}; timed's incidents: ${timed.incidents.map((i) => i.kind).join(', ')}; server ${server.unexpectedExit ?? 'running'})`);
      });
      server.pause();
      await waitFor('a stall', () => (watched.cam.state().stalls ?? 0) >= 1);
      expect(watched.incidents[0]).toMatchObject({ kind: 'stalled', stalled: true });
      // ffmpeg 5.x says "Connection timed out"; 4.x ends as if the stream had ended, and its reconnect times out.
      await waitFor('a timeout on the other camera', () => timed.incidents.find((i) => i.kind === 'timeout'));
      expect(timed.incidents.map((i) => i.kind)).not.toContain('stalled');
      expect(timed.cam.state().stalls).toBe(0);
      // The kernel still accepts connections for the frozen process; nothing answers them.
      await waitFor('a reconnect that times out', () => watched.incidents.some((i) => i.kind === 'timeout'), 60_000);
      expect(watched.cam.state().state).toBe('offline');
      const before = watched.frames.length;
      server.resume();
      // A thawed GStreamer server and ffmpeg's next backoff slot can take a while on a loaded box: a generous hang guard.
      await waitFor('frames after the thaw', () => watched.frames.length >= before + 3, 60_000);
      expect(watched.cam.state().state).toBe('degraded');
    } finally {
      await Promise.all([watched.cam.stop(), timed.cam.stop()]);
      await server.stop();
    }
  }, 240_000);

  it('a resolution change mid-stream: ffmpeg keeps scaling to the model size, no restart, frames stay aligned', async () => {
    const server = await RtspTestServer.start({ size: '320x240', flipSize: '240x180', flipMs: 1200 });
    const { cam, frames } = camera(rtsp(server.url()));
    try {
      cam.start();
      await waitFor('frames', () => frames.length >= 1);
      const changesSeen = server.sizeChanges;
      await waitFor('two size changes while streaming', () => server.sizeChanges >= changesSeen + 2);
      const atChange = frames.length;
      await waitFor('frames after the changes', () => frames.length >= atChange + 3);
      expect(frames.map((f) => smpteMismatch(f, W, H)).filter((m) => m !== null)).toEqual([]);
      expect(cam.state()).toMatchObject({ state: 'online', restarts: 0, stalls: 0 });
    } finally {
      await cam.stop();
      await server.stop();
    }
  });
});

describe('RTSP URL on a peer that is no RTSP server (real ffmpeg)', () => {
  async function incidents(behaviour: 'garbage' | 'silent', timeoutMs: number, n: number): Promise<CameraIncident[]> {
    const server = await FaultServer.start(behaviour);
    const seen: CameraIncident[] = [];
    const cam = new FfmpegCamera(
      { id: 'odd', fps: 5, stallTimeoutMs: 20_000, source: rtsp(`rtsp://127.0.0.1:${server.port}/cam`, { timeoutMs }) },
      { ffmpegPath, width: W, height: H, restart: { minMs: 50, maxMs: 200 } },
      new CapturedLog('warn').logger,
    );
    cam.on('incident', (i) => seen.push(i));
    cam.start();
    try {
      await waitFor(`${n} incidents`, () => seen.length >= n, 60_000);
    } finally {
      await cam.stop();
      await server.stop();
    }
    return seen;
  }

  it('streams garbage: invalid-data, never a crash', async () => {
    // ffmpeg chews on the garbage (it looks for an RTSP reply in it) before it gives up: one run is enough.
    const [first] = await incidents('garbage', 5000, 1);
    expect(first?.kind).toBe('invalid-data');
  });

  it('accepts and never answers: timeout', async () => {
    const [first] = await incidents('silent', 1000, 1);
    expect(first?.kind).toBe('timeout');
  });
});
