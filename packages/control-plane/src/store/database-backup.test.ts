import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { deviceTopic, encodeJson } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { freshDeviceCredentials } from '../../../../test/support/device-credentials.js';
import { waitUntil } from '../../../../test/support/wait-until.js';
import { loadControlPlaneConfig, type ControlPlaneConfigInput } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { createLogger } from '../logger.js';
import { telemetryWindow } from '../test-support/telemetry-windows.js';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { controlPlaneDatabaseFile } from './database-backup.js';
import { openDatabase } from './database.js';
import { DevicePresenceStore } from './device-presence-store.js';
import { TelemetryRollups } from './telemetry-rollups.js';
import { TelemetryStore } from './telemetry-store.js';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const run = promisify(execFile);
const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-operations-'));
  dirs.push(dir);
  return dir;
}

async function startControlPlane(dataDir: string, overrides: ControlPlaneConfigInput = {}): Promise<ControlPlane> {
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { ...overrides, dataDir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' } },
  });
  const cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
  return cp;
}

// The helper names the built package's ControlPlane; this is the same class, from source.
const credentials = (cp: ControlPlane, id: string) => freshDeviceCredentials(cp as unknown as Parameters<typeof freshDeviceCredentials>[0], id);

async function connect(cp: ControlPlane, id: string): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: id, ...(await credentials(cp, id)), reconnectPeriod: 0, connectTimeout: 5000 });
}

/**
 * What a database file holds, opened as a restored control plane opens it (the windows its rollups are
 * behind are counted again from the watermark): raw windows, and windows counted in the hour rollups
 * (equal in any consistent state).
 */
function contents(file: string): { integrity: string; windows: number; rolledUp: number; schema: number } {
  if (!existsSync(file)) throw new Error(`no backup at ${file}`);
  const db = openDatabase(file);
  try {
    new TelemetryBatchWriter(db, new TelemetryStore(db), new GapDetector(db, 60_000), new TelemetryRollups(db), new DevicePresenceStore(db));
    return {
      integrity: db.pragma('integrity_check', { simple: true }) as string,
      windows: db.prepare('SELECT COUNT(*) FROM telemetry_windows').pluck().get() as number,
      rolledUp: db.prepare('SELECT COALESCE(SUM(windows), 0) FROM telemetry_rollups_hour').pluck().get() as number,
      schema: db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get() as number,
    };
  } finally {
    db.close();
  }
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('online backup', () => {
  it('copies the live database, consistent, while a device keeps sending telemetry (API and CLI)', async () => {
    const dir = tempDir();
    const cp = await startControlPlane(join(dir, 'cp'));
    const dev = await connect(cp, 'busy');
    let seq = 0;
    let sending = true;
    const sender = (async () => {
      while (sending) {
        await dev.publishAsync(deviceTopic('busy', 'telemetry'), encodeJson(telemetryWindow('busy', seq)), { qos: 1 });
        seq++;
      }
    })();
    try {
      await waitUntil(() => cp.stats.telemetry.inserted >= 200, 'telemetry flowing');
      const committedBefore = cp.services.telemetry.count();

      const inProcess = join(dir, 'in-process.db');
      const viaApi = await cp.backup(inProcess);
      expect(viaApi).toMatchObject({ file: inProcess });
      expect(viaApi.bytes).toBeGreaterThan(0);

      const configFile = join(dir, 'control-plane.yaml');
      writeFileSync(configFile, `dataDir: ${join(dir, 'cp')}\n`);
      const fromCli = join(dir, 'cli.db');
      const out = await run(process.execPath, ['--import', 'tsx', CLI, 'backup', fromCli, '--config', configFile], { env: { ...process.env, PERCH_LOG_LEVEL: 'silent' } });
      expect(JSON.parse(out.stdout)).toMatchObject({ file: fromCli });

      // The CLI refuses to overwrite a file and leaves it as it was.
      const again = await run(process.execPath, ['--import', 'tsx', CLI, 'backup', fromCli, '--config', configFile]).then(
        () => null,
        (err: { code: number; stderr: string }) => err,
      );
      expect(again?.code).toBe(1);
      expect(again?.stderr).toMatch(/exists/);

      // Ingest went on during and after both backups.
      const insertedAfterBackups = cp.stats.telemetry.inserted;
      await waitUntil(() => cp.stats.telemetry.inserted > insertedAfterBackups + 50, 'telemetry still flowing after the backups');
      sending = false;
      await sender;
      await waitUntil(() => cp.services.telemetry.count() === seq, 'every window committed');

      for (const file of [inProcess, fromCli]) {
        const c = contents(file);
        expect(c.integrity).toBe('ok');
        expect(c.schema).toBeGreaterThanOrEqual(5);
        expect(c.windows).toBeGreaterThanOrEqual(committedBefore);
        expect(c.windows).toBeLessThan(seq);
        // One snapshot: every window in it is in its rollups too, once, none half-written.
        expect(c.rolledUp).toBe(c.windows);
      }
      expect(existsSync(`${fromCli}.partial`)).toBe(false);
    } finally {
      sending = false;
      await sender.catch(() => undefined);
      await dev.endAsync();
      await cp.stop();
    }
  });
});

describe('graceful shutdown', () => {
  it('commits every window received before stop(), acknowledged or not', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'cp');
    // No batch would be written for a minute: only stop() can write these.
    const cp = await startControlPlane(dataDir, { telemetry: { ingest: { maxBatch: 10_000, flushMs: 60_000 } } });
    const dev = await connect(cp, 'last-words');
    dev.on('error', () => undefined);
    const n = 300;
    let acknowledged = 0;
    let received = 0;
    try {
      for (let seq = 0; seq < n; seq++) {
        // Not awaited: a window is acknowledged only once committed (broker/device-intake.ts), here not before stop().
        dev.publish(deviceTopic('last-words', 'telemetry'), encodeJson(telemetryWindow('last-words', seq)), { qos: 1 }, (err) => {
          if (!err) acknowledged++;
        });
      }
      // aedes reads a client's next packets once those it has are settled, so only the first few arrive before a commit.
      await waitUntil(() => cp.stats.telemetry.received > 0, 'windows received');
      await new Promise((r) => setTimeout(r, 300));
      expect(cp.services.telemetry.count()).toBe(0);
      expect(acknowledged).toBe(0);
      received = cp.stats.telemetry.received;
    } finally {
      await cp.stop();
      dev.end(true);
    }
    expect(received).toBeGreaterThan(0);
    const c = contents(controlPlaneDatabaseFile(dataDir));
    expect(c).toMatchObject({ integrity: 'ok', windows: received, rolledUp: received });
  });
});
