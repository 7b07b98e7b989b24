import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { generateSigningKey } from '@perch/shared';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent.js';
import { resolveAgentConfig } from '../config/agent-config.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { DeviceObserver } from '../test-support/device-observer.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { LinkProxy } from '../test-support/link-proxy.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { OUTBOX_FILE } from './outbox.js';

const deviceId = 'full-disk-1';
const credentials = { [deviceId]: 'device-secret', 'control-plane-double': 'cp-secret', [`observer-${deviceId}`]: 'obs-secret' };

/**
 * The whole agent (real ffmpeg camera, real onnxruntime) with its outbox's
 * database genuinely full: another writer takes every page the agent's
 * connection may use (its max_page_count, derived from outbox.maxBytes), so
 * the agent's inserts fail with SQLITE_FULL exactly as on a full disk.
 */
describe('agent with a full outbox disk', () => {
  let broker: TestBroker;
  let proxy: LinkProxy;
  let cp: ControlPlaneDouble;
  let observer: DeviceObserver;
  let dir: { path: string; remove(): Promise<void> };
  let agent: Agent;
  const captured = new CapturedLog('info');

  beforeAll(async () => {
    broker = await startBroker({ credentials });
    proxy = await LinkProxy.start(broker.port);
    cp = new ControlPlaneDouble(broker.url, { username: 'control-plane-double', password: 'cp-secret' });
    await cp.start();
    observer = new DeviceObserver(broker.url, deviceId, { username: `observer-${deviceId}`, password: 'obs-secret' });
    await observer.start();
    dir = await tempDir();
    const config = await resolveAgentConfig(
      {
        deviceId,
        dataDir: 'data',
        broker: { url: proxy.url, password: credentials[deviceId], reconnect: { minMs: 50, maxMs: 300 } },
        trust: { rootFile: cp.rootFile },
        ffmpegPath: process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path,
        telemetry: { windowSeconds: 0.2 },
        cameras: [{ id: 'cam', fps: 10, source: { kind: 'synthetic' } }],
        events: { enabled: false },
        http: { enabled: false },
        outbox: { maxBytes: 64 * 1024 },
      },
      dir.path,
    );
    agent = new Agent(config, captured.logger);
    await agent.start();
    const model = buildTinyModel({ kind: 'probabilities' });
    cp.addArtifact(model.bytes);
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 1, cp.signTarget(model.bytes, model.metadata, { name: 'colours', version: '1' })));
    await waitFor('windows with inference', () => observer.telemetry.some((w) => (w.cameras[0]?.framesInferred ?? 0) > 0), 30_000);
  });

  afterAll(async () => {
    await agent?.stop();
    await observer?.stop();
    await cp?.stop();
    await proxy?.close();
    await broker?.close();
    await dir?.remove();
  });

  it('drops windows it cannot store, counts them, keeps inferring, and reports the count once there is room', async () => {
    const file = join(agent.config.dataDir, OUTBOX_FILE);
    // The broker goes away, so windows have to be stored; then the disk fills up.
    proxy.down();
    const filler = new Database(file);
    try {
      filler.exec('CREATE TABLE ballast (b BLOB)');
      const add = filler.prepare('INSERT INTO ballast VALUES (?)');
      filler.transaction(() => {
        for (let i = 0; i < 400; i++) add.run(Buffer.alloc(4000, i));
      })();
      const droppedAtFull = agent.outbox.stats.droppedTotal;
      await waitFor('windows dropped for a full disk', () => agent.outbox.stats.droppedTotal >= droppedAtFull + 5, 30_000);
      expect(captured.find((l) => l.msg === 'outbox full: dropped the oldest records' && l.cause === 'storage-full')).toMatchObject({
        err: expect.stringMatching(/full/) as unknown,
      });
      // Inference goes on: windows keep being closed, numbered and logged with inferred frames.
      const lastSeq = Math.max(...captured.lines.filter((l) => typeof l.seq === 'number').map((l) => l.seq as number));
      await waitFor('an inferring window after the drops', () =>
        captured.find((l) => typeof l.seq === 'number' && l.seq > lastSeq && typeof l.msg === 'string' && /^camera cam: [1-9]\d* inferred/.test(l.msg)),
      );
      // Room again, and the broker back.
      filler.exec('DROP TABLE ballast');
    } finally {
      filler.close();
    }
    proxy.up();
    const dropped = agent.outbox.stats.droppedTotal;
    const w = await waitFor('a window reporting the drops', () => observer.telemetry.find((t) => (t.outbox?.droppedTotal ?? 0) >= dropped), 30_000);
    expect(w.outbox?.droppedTotal).toBe(agent.outbox.stats.droppedTotal);
    expect(observer.telemetry.some((t) => (t.outbox?.droppedInWindow ?? 0) > 0)).toBe(true);
    // Every window the control plane never saw is one the outbox counted.
    const seqs = [...new Set(observer.telemetry.map((t) => t.seq))].sort((a, b) => a - b);
    const missing = (seqs.at(-1) ?? 0) + 1 - (seqs[0] ?? 0) - seqs.length;
    expect(missing).toBeGreaterThan(0);
    expect(missing).toBeLessThanOrEqual(agent.outbox.stats.droppedTotal);
    expect(observer.invalid).toEqual([]);
  });
});
