import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic, encodeJson, type TelemetryWindow } from '@perch/shared';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDeviceCredentials } from '../../../../test/support/device-credentials.js';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { createLogger } from '../logger.js';
import { until } from './test-support/broker-harness.js';
import { telemetryWindow as windowOf } from '../test-support/telemetry-windows.js';

const TELEMETRY_LIMIT = 2048;

/** A valid window; `labels` class counts make it as large as needed. */
function telemetryWindow(deviceId: string, seq: number, labels: number): TelemetryWindow {
  const classCounts = Object.fromEntries(Array.from({ length: labels }, (_, i) => [`label-${i}`, 1]));
  return windowOf(deviceId, seq, { start: 1_000 * seq, durationMs: 1_000, cameras: [{ id: 'front', framesInferred: 10, framesDropped: 0, classCounts }] });
}

let dir: string;
let cp: ControlPlane;

// The helper names the built package's ControlPlane; this is the same class, from source.
const credentials = (id: string) => freshDeviceCredentials(cp as unknown as Parameters<typeof freshDeviceCredentials>[0], id);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-cp-limits-'));
  const config = loadControlPlaneConfig({
    env: {},
    overrides: {
      dataDir: dir,
      mqtt: { host: '127.0.0.1', port: 0, limits: { maxPayloadBytes: { telemetry: TELEMETRY_LIMIT } } },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'silent' },
    },
  });
  cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
});

afterAll(async () => {
  await cp.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('control plane behind the broker limits', () => {
  it('never ingests a telemetry window over the configured limit, and the device carries on', async () => {
    const creds = await credentials('dev-big');
    const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: 'dev-big', ...creds, reconnectPeriod: 0 });
    try {
      const big = encodeJson(telemetryWindow('dev-big', 1, 200));
      const small = encodeJson(telemetryWindow('dev-big', 2, 2));
      expect(big.length).toBeGreaterThan(TELEMETRY_LIMIT);
      expect(small.length).toBeLessThanOrEqual(TELEMETRY_LIMIT);
      const before = cp.stats.telemetry.received;
      await dev.publishAsync(deviceTopic('dev-big', 'telemetry'), big, { qos: 1 });
      await dev.publishAsync(deviceTopic('dev-big', 'telemetry'), small, { qos: 1 });

      await until('the window under the limit stored', () => cp.services.telemetry.recent('dev-big', 10).length > 0);
      expect(cp.services.telemetry.recent('dev-big', 10).map((w) => w.seq)).toEqual([2]);
      // The big one never reached the control plane's own client, so it was not even refused there.
      expect(cp.stats.telemetry.received).toBe(before + 1);
      expect(cp.stats.broker.oversizePublishes).toBe(1);
      expect(cp.stats.broker.clients['dev-big']?.oversizePublishes).toBe(1);
      expect(dev.connected).toBe(true);
    } finally {
      await dev.endAsync();
    }
  });
});
