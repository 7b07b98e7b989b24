import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic, encodeJson } from '@perch/shared';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { createLogger } from '../logger.js';
import { controlPlaneDatabaseFile } from '../store/database-backup.js';
import { telemetryWindow } from '../test-support/telemetry-windows.js';

/*
 * With the embedded broker a device's telemetry window is acknowledged only
 * once it is committed (broker/device-intake.ts): a PUBACK is a promise
 * that the window is on disk, whatever happens to the control plane next.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startControlPlane(dir: string, ingest: { flushMs?: number } = {}): Promise<ControlPlane> {
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' }, telemetry: { ingest } },
  });
  const cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
  return cp;
}

async function connect(cp: ControlPlane, deviceId: string, password: string): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: deviceId, username: deviceId, password, reconnectPeriod: 0, connectTimeout: 5000 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  cleanups.push(() => void client.end(true));
  return client;
}

/** A second connection to the control plane's database: it sees committed rows only. */
function committedReader(dir: string): (deviceId: string, seq: number) => boolean {
  const db = new Database(controlPlaneDatabaseFile(dir), { readonly: true, fileMustExist: true });
  cleanups.push(() => void db.close());
  const stmt = db.prepare('SELECT 1 FROM telemetry_windows WHERE device_id = ? AND seq = ?').pluck();
  return (deviceId, seq) => stmt.get(deviceId, seq) === 1;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-ack-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('telemetry acknowledged on commit', () => {
  it('has every window committed by the time its PUBACK reaches the device, though batches wait up to a second', async () => {
    const dir = tempDir();
    // A long flush interval: a PUBACK sent on receipt would come long before the commit.
    const cp = await startControlPlane(dir, { flushMs: 1000 });
    cleanups.push(() => cp.stop());
    const { password } = await cp.issueDeviceCredentials('dev-ack');
    const dev = await connect(cp, 'dev-ack', password);
    const committed = committedReader(dir);
    const seqs = Array.from({ length: 40 }, (_, i) => i + 1);
    const seenAtAck = await Promise.all(
      seqs.map(async (seq) => {
        const sent = performance.now();
        await dev.publishAsync(deviceTopic('dev-ack', 'telemetry'), encodeJson(telemetryWindow('dev-ack', seq)), { qos: 1 });
        return { seq, committed: committed('dev-ack', seq), waitedMs: performance.now() - sent };
      }),
    );
    expect(seenAtAck.filter((s) => !s.committed)).toEqual([]);
    // The acknowledgements did wait for the batch (not a timing goal: only that they were held at all).
    expect(Math.max(...seenAtAck.map((s) => s.waitedMs))).toBeGreaterThan(100);
    expect(cp.stats.intake).toMatchObject({ taken: 40, refused: 0 });
  });

  it('loses no acknowledged window when stopped in the middle of a flood, and stores the unacknowledged ones when devices send them again', async () => {
    const dir = tempDir();
    let cp = await startControlPlane(dir, { flushMs: 20 });
    const devices = Array.from({ length: 8 }, (_, i) => `dev-flood-${i}`);
    const passwords = new Map<string, string>();
    for (const id of devices) passwords.set(id, (await cp.issueDeviceCredentials(id)).password);
    const acked = new Map<string, number[]>(devices.map((id) => [id, []]));
    const sentUpTo = new Map<string, number>();
    const PER_DEVICE = 600;
    const floods = await Promise.all(
      devices.map(async (id) => {
        const dev = await connect(cp, id, passwords.get(id) as string);
        dev.on('error', () => undefined);
        // Open loop, no waiting for acknowledgements: mqtt.js queues what the socket cannot take.
        for (let seq = 1; seq <= PER_DEVICE; seq++) {
          dev.publish(deviceTopic(id, 'telemetry'), encodeJson(telemetryWindow(id, seq)), { qos: 1 }, (err) => {
            if (!err) acked.get(id)?.push(seq);
          });
          sentUpTo.set(id, seq);
        }
        return dev;
      }),
    );
    // Stop once some, not all, are acknowledged.
    const total = () => [...acked.values()].reduce((n, a) => n + a.length, 0);
    const end = Date.now() + 30_000;
    while (total() < devices.length * 50 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    await cp.stop();
    for (const dev of floods) dev.end(true);
    const ackedAtStop = total();
    expect(ackedAtStop).toBeGreaterThan(0);
    expect(ackedAtStop).toBeLessThan(devices.length * PER_DEVICE);

    // Every acknowledged window is on disk.
    const db = new Database(controlPlaneDatabaseFile(dir), { readonly: true });
    const has = db.prepare('SELECT 1 FROM telemetry_windows WHERE device_id = ? AND seq = ?').pluck();
    const missing = [...acked].flatMap(([id, seqs]) => seqs.filter((seq) => has.get(id, seq) !== 1).map((seq) => `${id}#${seq}`));
    db.close();
    expect(missing).toEqual([]);

    // The devices send what was never acknowledged again, as an agent's outbox does: all of it is stored, once.
    cp = await startControlPlane(dir, { flushMs: 20 });
    cleanups.push(() => cp.stop());
    await Promise.all(
      devices.map(async (id) => {
        const dev = await connect(cp, id, passwords.get(id) as string);
        const done = new Set(acked.get(id));
        const resend = Array.from({ length: PER_DEVICE }, (_, i) => i + 1).filter((seq) => !done.has(seq));
        await Promise.all(resend.map((seq) => dev.publishAsync(deviceTopic(id, 'telemetry'), encodeJson(telemetryWindow(id, seq)), { qos: 1 })));
      }),
    );
    const counts = committedCounts(dir, devices);
    expect(counts).toEqual(Object.fromEntries(devices.map((id) => [id, PER_DEVICE])));
  });
});

function committedCounts(dir: string, devices: string[]): Record<string, number> {
  const db = new Database(controlPlaneDatabaseFile(dir), { readonly: true });
  try {
    const count = db.prepare('SELECT COUNT(*) FROM telemetry_windows WHERE device_id = ?').pluck();
    return Object.fromEntries(devices.map((id) => [id, count.get(id) as number]));
  } finally {
    db.close();
  }
}
