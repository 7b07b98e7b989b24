import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic, encodeJson, type TelemetryWindow } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMetrics, sampleValue } from '../../../../agent/src/test-support/prometheus-text.js';
import { freshDeviceCredentials } from '../../../../../test/support/device-credentials.js';
import { waitUntil } from '../../../../../test/support/wait-until.js';
import { loadControlPlaneConfig, type ControlPlaneConfigInput } from '../../config/control-plane-config.js';
import { ControlPlane } from '../../control-plane.js';
import { createLogger } from '../../logger.js';
import { telemetryWindow, type CameraSpec } from '../../test-support/telemetry-windows.js';

/** An hour boundary in the past: device clocks name the buckets. */
const T = 3_600_000 * 472_222;
const MIN = 60_000;
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();
const repeat = (v: number, n: number) => new Array<number>(n).fill(v);
const front: CameraSpec = { id: 'front', classCounts: { cat: 6, dog: 3 }, latencies: repeat(5.5, 20) };
const back: CameraSpec = { id: 'back', classCounts: { cat: 1, empty: 8 }, latencies: repeat(12.5, 10) };

interface Site {
  cp: ControlPlane;
  dir: string;
  base: string;
  get(path: string): Promise<Response>;
}

async function startSite(overrides: ControlPlaneConfigInput = {}): Promise<Site> {
  const dir = mkdtempSync(join(tmpdir(), 'perch-fleet-telemetry-'));
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { ...overrides, dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' } },
  });
  const cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
  const base = `http://127.0.0.1:${cp.httpPort}`;
  return { cp, dir, base, get: (path) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${cp.adminToken}` } }) };
}

async function stopSite(s: Site): Promise<void> {
  await s.cp.stop();
  rmSync(s.dir, { recursive: true, force: true });
}

// The helper names the built package's ControlPlane; this is the same class, from source.
const credentials = (cp: ControlPlane, id: string) => freshDeviceCredentials(cp as unknown as Parameters<typeof freshDeviceCredentials>[0], id);

async function connect(cp: ControlPlane, id: string): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: id, ...(await credentials(cp, id)), reconnectPeriod: 0, connectTimeout: 5000 });
}

const publish = (dev: MqttClient, w: TelemetryWindow) => dev.publishAsync(deviceTopic(w.deviceId, 'telemetry'), encodeJson(w), { qos: 1 });
const json = async <T = Record<string, unknown>>(res: Response) => (await res.json()) as T;

describe('fleet telemetry API', () => {
  let s: Site;
  let received = 0;

  beforeAll(async () => {
    s = await startSite();
    const a = await connect(s.cp, 'cam-a');
    const b = await connect(s.cp, 'cam-b');
    const c = await connect(s.cp, 'cam-c');
    try {
      // cam-a: seqs 0 1 2 5 (3 and 4 missing); cam-b and cam-c one window each.
      await publish(a, telemetryWindow('cam-a', 0, { start: T, cameras: [front, back] }));
      await publish(a, telemetryWindow('cam-a', 1, { start: T + 30_000, cameras: [front] }));
      await publish(a, telemetryWindow('cam-a', 2, { start: T + MIN, cameras: [back] }));
      await publish(a, telemetryWindow('cam-a', 5, { start: T + HOUR, cameras: [front] }));
      await publish(b, telemetryWindow('cam-b', 0, { start: T + 2 * MIN, cameras: [front] }));
      await publish(c, telemetryWindow('cam-c', 0, { start: T + 3 * MIN, cameras: [back] }));
      received = 6;
      await waitUntil(() => s.cp.stats.telemetry.inserted >= received, 'six windows stored');
      // Rollups, sequences and last seen are written behind the windows (every few seconds): now, for these reads.
      await s.cp.services.ingest.flush();
    } finally {
      await Promise.all([a.endAsync(), b.endAsync(), c.endAsync()]);
    }
    for (const id of ['cam-a', 'cam-b']) s.cp.services.identity.setLabels(id, { tags: [], groups: ['lobby'] });
  });

  afterAll(() => stopSite(s));

  it('serves a device rollup per minute with latency quantiles read from the merged bins', async () => {
    const res = await s.get(`/api/v1/devices/cam-a/telemetry/rollups?resolution=minute&from=${iso(T)}&to=${T + 2 * HOUR}`);
    expect(res.status).toBe(200);
    const body = await json<{ resolution: string; rollups: { bucketStart: string; windows: number; classCounts: Record<string, number>; latency: { spec: string; count: number; p50Ms: number; p95Ms: number; meanMs: number }[] }[] }>(res);
    expect(body.resolution).toBe('minute');
    expect(body.rollups.map((r) => [r.bucketStart, r.windows])).toEqual([[iso(T), 2], [iso(T + MIN), 1], [iso(T + HOUR), 1]]);
    const m0 = body.rollups[0]!;
    expect(m0.classCounts).toEqual({ cat: 13, dog: 6, empty: 8 });
    // 40 observations of 5.5 ms in [5, 6), 10 of 12.5 ms in [12, 13): p50 is the 25th, 25/40 into [5, 6);
    // p95 the 47.5th, 7.5/10 into [12, 13).
    expect(m0.latency).toHaveLength(1);
    expect(m0.latency[0]).toMatchObject({ spec: 'latency-ms.v2', count: 50 });
    expect(m0.latency[0]!.p50Ms).toBeCloseTo(5.625, 9);
    expect(m0.latency[0]!.p95Ms).toBeCloseTo(12.75, 9);
    expect(m0.latency[0]!.meanMs).toBeCloseTo((40 * 5.5 + 10 * 12.5) / 50, 9);
    // No challenger ran: nothing compared, and no agreement to speak of.
    expect((m0 as unknown as { shadow: unknown }).shadow).toEqual({ framesCompared: 0, agreed: 0, agreement: null });
  });

  it("serves a group's rollup: its members' windows added bucket by bucket", async () => {
    const res = await s.get(`/api/v1/groups/lobby/telemetry/rollups?resolution=hour&from=${T}&to=${T + 2 * HOUR}`);
    expect(res.status).toBe(200);
    const body = await json<{ members: number; rollups: { bucketStart: string; devices: number; windows: number; classCounts: Record<string, number> }[] }>(res);
    expect(body.members).toBe(2);
    expect(body.rollups.map((r) => [r.bucketStart, r.devices, r.windows])).toEqual([[iso(T), 2, 4], [iso(T + HOUR), 1, 1]]);
    // cam-a's first hour (front, back, front, back) and cam-b's front; cam-c is no member.
    expect(body.rollups[0]!.classCounts).toEqual({ cat: 6 + 1 + 6 + 1 + 6, dog: 9, empty: 16 });
  });

  it('reports missing seqs per device, and a late window fills them', async () => {
    const before = await json<{ missing: number; ranges: { firstSeq: number; lastSeq: number; confirmedLost: boolean }[]; highestSeq: number; contiguousSeq: number }>(
      await s.get('/api/v1/devices/cam-a/telemetry/gaps'),
    );
    expect(before).toMatchObject({ highestSeq: 5, contiguousSeq: 2, missing: 2, ranges: [{ firstSeq: 3, lastSeq: 4, confirmedLost: false }] });

    const a = await connect(s.cp, 'cam-a');
    await publish(a, telemetryWindow('cam-a', 3, { start: T + 2 * MIN, cameras: [front] }));
    await a.endAsync();
    received++;
    await waitUntil(() => s.cp.stats.telemetry.late === 1, 'the late window');
    await s.cp.services.ingest.flush();
    const after = await json<{ missing: number; ranges: { firstSeq: number; lastSeq: number }[] }>(await s.get('/api/v1/devices/cam-a/telemetry/gaps'));
    expect(after).toMatchObject({ missing: 1, ranges: [{ firstSeq: 4, lastSeq: 4 }] });
  });

  it('summarises the fleet', async () => {
    const res = await s.get('/api/v1/fleet/summary');
    expect(res.status).toBe(200);
    const body = await json<{ devices: { total: number }; ingest: { received: number; inserted: number; duplicates: number; late: number }; gaps: { devicesWithGaps: number; missing: number } }>(res);
    expect(body.devices.total).toBe(3);
    expect(body.ingest).toMatchObject({ received, inserted: received, duplicates: 0, late: 1 });
    expect(body.gaps).toMatchObject({ devicesWithGaps: 1, missing: 1 });
  });

  it('exposes Prometheus metrics at /metrics', async () => {
    // One window that does not decode: received, then dropped by the writer as malformed, not stored.
    const dropped = s.cp.stats.dispatch.dropped;
    const bad = await connect(s.cp, 'cam-a');
    await bad.publishAsync(deviceTopic('cam-a', 'telemetry'), Buffer.from('{"deviceId":"cam-a","seq":'), { qos: 1 });
    await bad.endAsync();
    await waitUntil(() => s.cp.stats.dispatch.dropped === dropped + 1, 'the malformed window dropped');
    const res = await s.get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const m = parseMetrics(await res.text());
    expect(sampleValue(m, 'perch_cp_telemetry_windows_received_total', {})).toBe(received + 1);
    expect(sampleValue(m, 'perch_cp_telemetry_windows_malformed_total', {})).toBe(1);
    expect(sampleValue(m, 'perch_cp_telemetry_windows_inserted_total', {})).toBe(received);
    expect(sampleValue(m, 'perch_cp_telemetry_windows_late_total', {})).toBe(1);
    expect(sampleValue(m, 'perch_cp_telemetry_ingest_lag_seconds_count', {})).toBe(received);
    expect(sampleValue(m, 'perch_cp_telemetry_batch_windows_sum', {})).toBe(received);
    expect(sampleValue(m, 'perch_cp_telemetry_missing_windows', { state: 'pending' })).toBe(1);
    expect(sampleValue(m, 'perch_cp_telemetry_devices_with_gaps', {})).toBe(1);
    expect(sampleValue(m, 'perch_cp_database_size_bytes', { file: 'main' })).toBeGreaterThan(0);
    expect(sampleValue(m, 'perch_cp_mqtt_clients_connected', {})).toBeGreaterThanOrEqual(1);
    const devices = ['online', 'offline', 'unknown'].map((status) => sampleValue(m, 'perch_cp_devices', { status }) ?? 0);
    expect(devices.reduce((x, y) => x + y, 0)).toBe(3);
    expect(m.families.get('perch_cp_telemetry_ingest_lag_seconds')).toBe('histogram');
    expect(m.families.get('perch_cp_process_cpu_seconds_total')).toBe('counter');
  });

  describe('refuses bad queries with the one error shape', () => {
    const refused = async (path: string, status: number, field?: string) => {
      const res = await s.get(path);
      expect(res.status).toBe(status);
      const body = await json<{ error: Record<string, string> }>(res);
      expect(Object.keys(body)).toEqual(['error']);
      expect(Object.keys(body.error).sort()).toEqual(field ? ['code', 'field', 'message'] : ['code', 'message']);
      if (field) expect(body.error.field).toBe(field);
      // Nothing of the store leaks into an answer.
      expect(JSON.stringify(body)).not.toMatch(/sqlite|SELECT|telemetry_|device_groups|stack|\.ts:/i);
      return body.error;
    };

    it('an unknown resolution, a reversed or unreadable range, a range too wide', async () => {
      const weekly = await refused('/api/v1/devices/cam-a/telemetry/rollups?resolution=weekly', 400, 'resolution');
      expect(weekly.code).toBe('validation_failed');
      await refused(`/api/v1/devices/cam-a/telemetry/rollups?from=${T + HOUR}&to=${T}`, 400, 'from');
      await refused(`/api/v1/devices/cam-a/telemetry/rollups?from=${T}&to=${T}`, 400, 'from');
      await refused('/api/v1/devices/cam-a/telemetry/rollups?from=yesterday', 400, 'from');
      await refused('/api/v1/devices/cam-a/telemetry/rollups?to=', 400, 'to');
      await refused(`/api/v1/devices/cam-a/telemetry/rollups?resolution=minute&from=${T}&to=${T + 25 * HOUR}`, 400, 'to');
      await refused(`/api/v1/groups/lobby/telemetry/rollups?resolution=hour&from=${T}&to=${T + 100 * 24 * HOUR}`, 400, 'to');
      await refused('/api/v1/devices/cam-a/telemetry/gaps?limit=0', 400, 'limit');
    });

    it('group and device names shaped like SQL, and unknown ones', async () => {
      const injected = await refused(`/api/v1/groups/${encodeURIComponent("x' OR 1=1 --")}/telemetry/rollups`, 400, 'group');
      expect(injected.code).toBe('validation_failed');
      await refused(`/api/v1/groups/${encodeURIComponent('lobby;DROP TABLE devices')}/telemetry/rollups`, 400, 'group');
      await refused(`/api/v1/devices/${encodeURIComponent("cam-a' OR '1'='1")}/telemetry/gaps`, 400, 'id');
      await refused('/api/v1/groups/nobody-here/telemetry/rollups', 404);
      await refused('/api/v1/devices/no-such-device/telemetry/rollups', 404);
      // The tables are still there and still answer.
      expect((await s.get('/api/v1/groups/lobby/telemetry/rollups')).status).toBe(200);
      expect(s.cp.services.devices.get('cam-a')).not.toBeNull();
    });
  });
});

describe('presence', () => {
  let s: Site;

  beforeAll(async () => {
    s = await startSite({ telemetry: { presence: { silentAfterSeconds: 0.3, sweepSeconds: 0.05 } } });
  });

  afterAll(() => stopSite(s));

  const status = (id: string) => {
    const d = s.cp.services.devices.get(id);
    return d ? `${d.status}${d.statusReason ? `/${d.statusReason}` : ''}` : 'none';
  };
  const online = (dev: MqttClient, id: string) => dev.publishAsync(deviceTopic(id, 'status'), encodeJson({ deviceId: id, state: 'online', since: Date.now() }), { qos: 1 });

  it('marks a device that went away without a will silent, spares a connected idle one, and takes the next message as online', async () => {
    const idle = await connect(s.cp, 'idle');
    await online(idle, 'idle');
    await waitUntil(() => status('idle') === 'online', 'idle online');
    // Heard from after 'idle', then gone with a clean disconnect: no will message, so nothing says offline.
    const quiet = await connect(s.cp, 'quiet');
    await online(quiet, 'quiet');
    await waitUntil(() => status('quiet') === 'online', 'quiet online');
    await quiet.endAsync();

    await waitUntil(() => status('quiet') === 'offline/silent', 'quiet marked silent');
    // 'idle' was last heard before 'quiet', so only its connection kept it online.
    expect(status('idle')).toBe('online');
    const summary = await json<{ devices: { online: number; offline: number; silent: number } }>(await s.get('/api/v1/fleet/summary'));
    expect(summary.devices).toMatchObject({ online: 1, offline: 1, silent: 1 });

    const back = await connect(s.cp, 'quiet');
    try {
      await publish(back, telemetryWindow('quiet', 0, { start: Date.now() }));
      await waitUntil(() => status('quiet') === 'online', 'quiet online again from its telemetry');
    } finally {
      await back.endAsync();
      await idle.endAsync();
    }
  });
});
