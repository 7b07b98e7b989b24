import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import type { CameraHealth, CameraState } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultServer, closedPort } from '../test-support/fault-servers.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { MjpegTestServer, smpteJpeg } from '../test-support/mjpeg-server.js';
import { smpteMismatch } from '../test-support/smpte-bars.js';
import type { CameraConfig } from './camera-config.js';
import { FfmpegCamera, type CameraIncident, type FfmpegCameraOptions } from './ffmpeg-camera.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
// Seven bars over 56 columns: eight pixels a bar, wide enough to survive JPEG's chroma blur.
const W = 56;
const H = 42;
const PASSWORD = 'p@ss:w/rd';

describe('MJPEG camera over HTTP (real ffmpeg, real HTTP server)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let small: Buffer;
  let large: Buffer;
  let passwordFile: string;
  let wrongPasswordFile: string;

  beforeAll(async () => {
    dir = await tempDir();
    [small, large] = await Promise.all([smpteJpeg(ffmpegPath, '160x120'), smpteJpeg(ffmpegPath, '224x168')]);
    passwordFile = join(dir.path, 'password');
    wrongPasswordFile = join(dir.path, 'wrong');
    await writeFile(passwordFile, `${PASSWORD}\n`);
    await writeFile(wrongPasswordFile, 'guess\n');
  });
  afterAll(() => dir.remove());

  function camera(source: CameraConfig['source'], opts: Partial<FfmpegCameraOptions> & { stallTimeoutMs?: number } = {}, log = new CapturedLog('warn')) {
    const { stallTimeoutMs = 20_000, ...rest } = opts;
    const cam = new FfmpegCamera({ id: 'cam', fps: 10, stallTimeoutMs, source }, { ffmpegPath, width: W, height: H, restart: { minMs: 50, maxMs: 400 }, ...rest }, log.logger);
    const frames: Uint8Array[] = [];
    const incidents: CameraIncident[] = [];
    const states: CameraHealth[] = [];
    cam.on('frame', (f) => frames.push(f));
    cam.on('incident', (i) => incidents.push(i));
    cam.on('state', (s) => states.push(s.state));
    return { cam, frames, incidents, states };
  }

  async function firstIncident(source: CameraConfig['source'], opts: Partial<FfmpegCameraOptions> & { stallTimeoutMs?: number } = {}): Promise<{ incident: CameraIncident; state: CameraState }> {
    const { cam, incidents } = camera(source, opts);
    cam.start();
    try {
      const incident = await waitFor('an incident', () => incidents[0]);
      return { incident, state: cam.state() };
    } finally {
      await cam.stop();
    }
  }

  it('streams with basic auth; frames stay whole and aligned while the picture size changes; the password is never logged', async () => {
    // Five frames of one size, five of another, at 20 frames/s: the size changes every quarter second.
    const server = await MjpegTestServer.start({ frames: [...Array(5).fill(small), ...Array(5).fill(large)], intervalMs: 50, auth: { user: 'viewer', password: PASSWORD } });
    const log = new CapturedLog('debug');
    const { cam, frames, states } = camera({ kind: 'mjpeg', url: server.url(), timeoutMs: 5000, username: 'viewer', passwordFile }, {}, log);
    try {
      cam.start();
      await waitFor('frames across several size changes', () => frames.length >= 15 && server.served >= 40);
      const bad = frames.map((f) => smpteMismatch(f, W, H)).filter((m) => m !== null);
      expect(bad).toEqual([]);
      expect(cam.state()).toMatchObject({ state: 'online', restarts: 0, stalls: 0 });
      expect(states).toEqual(['starting', 'online']);
    } finally {
      await cam.stop();
      await server.stop();
    }
    const logged = JSON.stringify(log.lines);
    expect(logged).toContain('viewer:***@127.0.0.1');
    expect(logged).not.toContain('p@ss');
    expect(logged).not.toContain(encodeURIComponent(PASSWORD));
  });

  it('wrong password: unauthorized; unknown path: not-found', async () => {
    const server = await MjpegTestServer.start({ frames: [small], auth: { user: 'viewer', password: PASSWORD } });
    try {
      const denied = await firstIncident({ kind: 'mjpeg', url: server.url(), timeoutMs: 5000, username: 'viewer', passwordFile: wrongPasswordFile });
      expect(denied.incident.kind).toBe('unauthorized');
      expect(denied.incident.message).toContain('401 Unauthorized');
      expect(denied.state).toMatchObject({ state: 'offline', errorKind: 'unauthorized' });
      const missing = await firstIncident({ kind: 'mjpeg', url: server.url('/nope'), timeoutMs: 5000 });
      expect(missing.incident.kind).toBe('not-found');
    } finally {
      await server.stop();
    }
  });

  it('a port that refuses: refused', async () => {
    const { incident } = await firstIncident({ kind: 'mjpeg', url: `http://127.0.0.1:${await closedPort()}/mjpeg`, timeoutMs: 5000 });
    expect(incident).toMatchObject({ kind: 'refused', stalled: false });
  });

  it('a peer that accepts and never answers: timeout, from ffmpeg\'s own timeout', async () => {
    const server = await FaultServer.start('silent');
    try {
      const { incident } = await firstIncident({ kind: 'mjpeg', url: `http://127.0.0.1:${server.port}/mjpeg`, timeoutMs: 1000 });
      expect(incident).toMatchObject({ kind: 'timeout', stalled: false });
      expect(incident.message).toContain('Connection timed out');
    } finally {
      await server.stop();
    }
  });

  it('a stream of garbage: invalid-data, retried with backoff, never a crash', async () => {
    for (const behaviour of ['http-garbage', 'garbage'] as const) {
      const server = await FaultServer.start(behaviour);
      const { cam, incidents, frames } = camera({ kind: 'mjpeg', url: `http://127.0.0.1:${server.port}/mjpeg`, timeoutMs: 5000 });
      try {
        cam.start();
        await waitFor(`three failed runs on ${behaviour}`, () => incidents.length >= 3 && cam.state().restarts >= 2);
        expect(incidents.map((i) => i.kind)).toEqual(incidents.map(() => 'invalid-data'));
        expect(cam.state()).toMatchObject({ state: 'offline', errorKind: 'invalid-data' });
        expect(frames).toHaveLength(0);
        expect(server.connections).toBeGreaterThanOrEqual(3);
      } finally {
        await cam.stop();
        await server.stop();
      }
    }
  });

  it('a camera that stops sending: stalled, restarted, degraded, then online again', async () => {
    const server = await MjpegTestServer.start({ frames: [small], intervalMs: 50 });
    const { cam, frames, incidents, states } = camera(
      // ffmpeg's own read timeout is longer than the stall timeout: the watchdog is what notices.
      { kind: 'mjpeg', url: server.url(), timeoutMs: 5000 },
      { stallTimeoutMs: 1000, health: { recoveryMs: 1500 } },
    );
    try {
      cam.start();
      await waitFor('online', () => states.at(-1) === 'online');
      server.paused = true;
      await waitFor('a stall', () => (cam.state().stalls ?? 0) >= 1);
      expect(incidents[0]).toMatchObject({ kind: 'stalled', stalled: true });
      expect(cam.state().state).toBe('offline');
      const before = frames.length;
      server.paused = false;
      await waitFor('frames again', () => frames.length > before + 3);
      await waitFor('online after the recovery period', () => states.at(-1) === 'online');
      expect(states.slice(0, 3)).toEqual(['starting', 'online', 'offline']);
      expect(states).toContain('degraded');
      expect(states.at(-1)).toBe('online');
      expect(cam.state().restarts).toBeGreaterThanOrEqual(1);
    } finally {
      await cam.stop();
      await server.stop();
    }
  });
});
