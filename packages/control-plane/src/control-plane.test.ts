import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic, encodeJson, type TelemetryWindow } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from './config/control-plane-config.js';
import { ControlPlane } from './control-plane.js';
import { createLogger } from './logger.js';
import { telemetryWindow as windowOf } from './test-support/telemetry-windows.js';

let dir: string;
let cp: ControlPlane;
let api: string;
/** the control plane's admin token, as every API call but health sends it */
let auth: { authorization: string };
/** each device's own password, issued as an operator would */
const passwords = new Map<string, string>();
const password = (deviceId: string) => passwords.get(deviceId) ?? '';

async function connect(clientId: string, password: string, username = clientId): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

async function until<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function telemetryWindow(deviceId: string, seq: number): TelemetryWindow {
  return windowOf(deviceId, seq, { start: 1_000 * seq, durationMs: 1_000, cameras: [{ id: 'front' }] });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-cp-'));
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' } },
  });
  cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
  api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
  auth = { authorization: `Bearer ${cp.adminToken}` };
  for (const id of ['dev-a', 'dev-b', 'dev-c']) passwords.set(id, (await cp.issueDeviceCredentials(id)).password);
});

afterAll(async () => {
  await cp.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('control plane broker', () => {
  it('refuses a device with the wrong password', async () => {
    await expect(connect('dev-a', 'not-the-token-at-all')).rejects.toThrow(/Bad username or password|Not authorized/i);
  });

  it('refuses a username that is not the client id', async () => {
    // dev-b's own valid password, but not as dev-b's client id.
    await expect(connect('dev-a', password('dev-b'), 'dev-b')).rejects.toThrow();
  });

  it('ingests telemetry once per (device, seq) and keeps one device off another device topics', async () => {
    const dev = await connect('dev-a', password('dev-a'));
    try {
      await dev.publishAsync(deviceTopic('dev-a', 'telemetry'), encodeJson(telemetryWindow('dev-a', 1)), { qos: 1 });
      await dev.publishAsync(deviceTopic('dev-a', 'telemetry'), encodeJson(telemetryWindow('dev-a', 1)), { qos: 1 });
      await dev.publishAsync(deviceTopic('dev-a', 'telemetry'), encodeJson(telemetryWindow('dev-a', 2)), { qos: 1 });
      await until(() => cp.stats.telemetry.received >= 3, 'three windows received');
      await until(() => cp.services.telemetry.count() === 2, 'two windows stored');
      expect(cp.stats.telemetry.duplicates).toBe(1);
      const totals = cp.services.telemetry.classTotals('dev-a', 0);
      expect(totals.classCounts).toEqual({ cat: 12, dog: 6 });
    } finally {
      await dev.endAsync();
    }

    // Publishing on another device's topic gets the client disconnected and nothing ingested.
    const intruder = await connect('dev-c', password('dev-c'));
    const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()));
    intruder.publish(deviceTopic('dev-victim', 'telemetry'), encodeJson(telemetryWindow('dev-victim', 1)), { qos: 1 });
    await closed;
    intruder.end(true);
    expect(cp.services.devices.get('dev-victim')).toBeNull();
  });

  it('logs and drops malformed and schema-invalid payloads and keeps serving', async () => {
    const dev = await connect('dev-b', password('dev-b'));
    try {
      const before = cp.stats.dispatch.dropped;
      await dev.publishAsync(deviceTopic('dev-b', 'telemetry'), '{not json', { qos: 1 });
      await dev.publishAsync(deviceTopic('dev-b', 'telemetry'), encodeJson({ ...telemetryWindow('dev-b', 1), seq: -4 }), { qos: 1 });
      await dev.publishAsync(deviceTopic('dev-b', 'reported'), encodeJson({ deviceId: 'dev-b' }), { qos: 1 });
      // A payload naming another device than its topic is refused too.
      await dev.publishAsync(deviceTopic('dev-b', 'telemetry'), encodeJson(telemetryWindow('dev-a', 9)), { qos: 1 });
      await until(() => cp.stats.dispatch.dropped >= before + 4, 'four drops');
      await dev.publishAsync(deviceTopic('dev-b', 'telemetry'), encodeJson(telemetryWindow('dev-b', 7)), { qos: 1 });
      await until(() => cp.services.telemetry.recent('dev-b', 5).length === 1, 'valid window stored after bad ones');
      expect(cp.services.telemetry.recent('dev-a', 10).map((w) => w.seq)).not.toContain(9);
      const health = await fetch(`${api}/health`);
      expect(health.status).toBe(200);
    } finally {
      await dev.endAsync();
    }
  });
});

describe('control plane REST API', () => {
  const goodMetadata = {
    labels: ['empty', 'cat', 'dog'],
    input: { name: 'input', width: 8, height: 8, layout: 'NCHW', channelOrder: 'RGB' },
    normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
    output: { name: 'probabilities', kind: 'probabilities' },
  };

  function upload(name: string, version: string, metadata: unknown, file: Uint8Array | null) {
    const form = new FormData();
    form.set('version', version);
    form.set('metadata', typeof metadata === 'string' ? metadata : JSON.stringify(metadata));
    if (file) form.set('file', new Blob([file]), 'model.onnx');
    return fetch(`${api}/models/${name}/versions`, { method: 'POST', body: form, headers: auth });
  }

  it('refuses a corrupt ONNX file with a clear 422 and registers nothing', async () => {
    const res = await upload('demo', '1.0.0', goodMetadata, new TextEncoder().encode('this is not a protobuf model at all'));
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string; message: string; field: string } };
    expect(body.error.code).toBe('invalid_model');
    expect(body.error.message).toMatch(/not a loadable ONNX model/);
    expect(body.error.field).toBe('file');
    const models = (await (await fetch(`${api}/models`, { headers: auth })).json()) as { models: unknown[] };
    expect(models.models).toEqual([]);
    expect(readdirSync(join(dir, 'artifacts', 'sha256'))).toEqual([]);
  });

  it('names the field at fault for bad metadata and bad forms', async () => {
    const badLayout = await upload('demo', '1.0.0', { ...goodMetadata, input: { ...goodMetadata.input, layout: 'CHW' } }, new Uint8Array([1]));
    expect(badLayout.status).toBe(400);
    expect(((await badLayout.json()) as { error: { field: string } }).error.field).toBe('metadata.input.layout');

    const badJson = await upload('demo', '1.0.0', '{oops', new Uint8Array([1]));
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { message: string } }).error.message).toMatch(/malformed JSON/);

    const noFile = await upload('demo', '1.0.0', goodMetadata, null);
    expect(((await noFile.json()) as { error: { field: string } }).error.field).toBe('file');

    const badName = await upload('Bad Name!', '1.0.0', goodMetadata, new Uint8Array([1]));
    expect(badName.status).toBe(400);

    const notMultipart = await fetch(`${api}/models/demo/versions`, { method: 'POST', body: '{}', headers: { ...auth, 'content-type': 'application/json' } });
    expect(notMultipart.status).toBe(415);
  });

  it('refuses a desired model that is not registered and malformed bodies', async () => {
    const res = await fetch(`${api}/devices/dev-a/desired-model`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ model: { name: 'nope', version: '1' } }),
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unknown_model_version');

    const bad = await fetch(`${api}/devices/dev-a/desired-model`, { method: 'PUT', body: '{"model": 3}', headers: { ...auth, 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { field: string } }).error.field).toBe('model');
  });

  it('lists devices with status and last seen, and answers unknown routes in the error shape', async () => {
    // Last seen is written behind the windows (every few seconds): now, for this read.
    await cp.services.ingest.flush();
    const list = (await (await fetch(`${api}/devices`, { headers: auth })).json()) as { devices: { id: string; lastSeen: string | null }[] };
    const a = list.devices.find((d) => d.id === 'dev-a');
    expect(a?.lastSeen).toMatch(/^\d{4}-/);
    const missing = await fetch(`${api}/devices/no-such-device`, { headers: auth });
    expect(missing.status).toBe(404);
    const route = await fetch(`${api}/nothing-here`, { headers: auth });
    expect(((await route.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});
