import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger } from '@perch/control-plane';
import { reportedStateSchema, telemetryWindowSchema } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetSimulator, type DesiredStatePolicy } from '../bench/lib/fleet-simulator.js';
import { buildBackboneModel } from './support/backbone-model.js';
import { freshDeviceCredentials } from './support/device-credentials.js';
import { desireModel, registerModel } from './support/registry-api.js';
import { startTestControlPlane, type TestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * The fleet simulator (bench/lib/fleet-simulator.ts) against a real control
 * plane: 50 simulated devices, each a real mqtt.js connection with its own
 * credentials, publishing telemetry windows every 50 ms (1,000 a second in
 * all, so windows are in flight when the control plane goes). Every window must
 * be stored exactly once, desired states must reach every device and their
 * reported states come back, and a control plane stopped and started again
 * on the same data and port mid-run must get every device back and lose or
 * double no window.
 */
const DEVICES = 50;
const MODEL = 'fleet-sim-test';

let dir: string;
let site: TestControlPlane;
let cp: ControlPlane;
let sim: FleetSimulator | null = null;

/** Every fifth device fails the second generation, the rest run it: the policy decides per device. */
const policy: DesiredStatePolicy = (device, desired) =>
  desired.generation >= 2 && device.index % 5 === 0 ? { phase: 'failed', reason: 'simulated download failure', afterMs: 50 } : { phase: 'active', afterMs: 20 };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-fleet-sim-'));
  site = await startTestControlPlane(dir);
  cp = site.cp;
});

afterAll(async () => {
  await sim?.stop();
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function api(): { api: string; adminToken: string } {
  return { api: `http://127.0.0.1:${cp.httpPort}/api/v1`, adminToken: cp.adminToken };
}

function reportedOf(id: string) {
  const r = cp.services.devices.get(id)?.reported;
  return r ? reportedStateSchema.parse(r) : null;
}

describe('fleet simulator', () => {
  it('connects 50 devices, stores every window once, carries desired and reported states, and survives a control plane restart', async () => {
    const ids = Array.from({ length: DEVICES }, (_, i) => `sim-${String(i).padStart(2, '0')}`);
    const devices = await Promise.all(ids.map(async (deviceId) => ({ deviceId, password: (await freshDeviceCredentials(cp, deviceId)).password })));
    sim = new FleetSimulator({
      url: `mqtt://127.0.0.1:${cp.mqttPort}`,
      devices,
      connectRatePerSecond: 200,
      reconnect: { minMs: 100, maxMs: 1000 },
      telemetry: { intervalMs: 50 },
      onDesired: policy,
    });
    sim.start();
    await sim.waitConnected(DEVICES, 30_000);
    await waitUntil(() => ids.every((id) => cp.services.devices.get(id)?.status === 'online'), 'every simulated device online at the control plane', 30_000);

    // A desired state for every device, through the REST API as an operator sets it.
    const model = buildBackboneModel({ side: 8, hidden: 8 });
    const v1 = await registerModel(api(), MODEL, '1.0.0', model.metadata, model.bytes);
    for (const id of ids) await desireModel(api(), id, MODEL, '1.0.0');
    await waitUntil(() => ids.every((id) => reportedOf(id)?.deployment.phase === 'active' && reportedOf(id)?.active?.sha256 === v1.sha256), 'every device to report the model active', 30_000);
    expect(sim.stats().desiredInvalid).toBe(0);

    // The control plane goes away and comes back on the same data and port while windows keep coming.
    const before = sim.stats();
    // The first control plane's counters, read after its stop has flushed the last batch.
    const firstIngest = cp.stats.telemetry;
    await cp.stop();
    await waitUntil(() => sim?.stats().connected === 0, 'every device to see the control plane gone', 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    cp = new ControlPlane(site.config, createLogger('warn'));
    await cp.start();
    await sim.waitConnected(DEVICES, 60_000);
    const after = sim.stats();
    expect(after.reconnects - before.reconnects).toBeGreaterThanOrEqual(DEVICES);
    expect(after.connackFailures).toBe(0);
    expect(after.subscribeRefused).toBe(0);

    // A second generation after the restart: every fifth device fails it, the others run it.
    const v2 = await registerModel(api(), MODEL, '1.1.0', model.metadata, buildBackboneModel({ side: 8, hidden: 8, headSeed: 7 }).bytes);
    for (const id of ids) await desireModel(api(), id, MODEL, '1.1.0');
    await waitUntil(() => ids.every((id) => reportedOf(id)?.deployment.generation === 2 && ['active', 'failed'].includes(reportedOf(id)?.deployment.phase ?? '')), 'every device to report generation 2', 30_000);
    ids.forEach((id, i) => {
      const r = reportedOf(id);
      if (i % 5 === 0) {
        expect(r?.deployment.phase, id).toBe('failed');
        expect(r?.active?.sha256, id).toBe(v1.sha256);
      } else {
        expect(r?.deployment.phase, id).toBe('active');
        expect(r?.active?.sha256, id).toBe(v2.sha256);
      }
    });

    // Stop producing, let the outboxes empty, and compare what was produced with what is stored.
    sim.setTelemetry(null);
    await sim.drained(30_000);
    await cp.services.fleet.ingest.flush();
    const stats = sim.stats();
    expect(stats.windowsDropped).toBe(0);
    expect(stats.windowsProduced).toBeGreaterThan(DEVICES * 5);
    const rows = cp.db.prepare('SELECT device_id AS id, COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi FROM telemetry_windows GROUP BY device_id').all() as { id: string; n: number; lo: number; hi: number }[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const p of sim.progress()) {
      const produced = p.nextSeq - p.firstSeq;
      // (device, seq) is the primary key: a count equal to the span from first to last seq means every seq once.
      expect(byId.get(p.deviceId), p.deviceId).toEqual({ id: p.deviceId, n: produced, lo: p.firstSeq, hi: p.nextSeq - 1 });
    }
    const stored = rows.reduce((n, r) => n + r.n, 0);
    expect(stored).toBe(stats.windowsProduced);
    // Both control planes together inserted each window once; any resend after the restart was a duplicate.
    expect(firstIngest.inserted + cp.stats.telemetry.inserted).toBe(stats.windowsProduced);
    expect(cp.services.fleet.gaps.totals(Date.now()).missing).toBe(0);
    // What was stored is what the contract allows.
    const sample = cp.db.prepare('SELECT payload_json AS p FROM telemetry_windows ORDER BY random() LIMIT 200').all() as { p: string }[];
    for (const { p } of sample) expect(telemetryWindowSchema.safeParse(JSON.parse(p)).success).toBe(true);

    await sim.stop({ graceful: true });
    sim = null;
    await waitUntil(() => ids.every((id) => cp.services.devices.get(id)?.status === 'offline'), 'every device offline after saying goodbye', 30_000);
  });

  it('devices without credentials claim their own with the claim token, then connect with them', async () => {
    const ids = ['sim-claim-0', 'sim-claim-1', 'sim-claim-2'];
    const claiming = new FleetSimulator({ url: `mqtt://127.0.0.1:${cp.mqttPort}`, devices: ids.map((deviceId) => ({ deviceId })), claimToken: cp.claimToken, reconnect: { minMs: 100, maxMs: 1000 } });
    try {
      claiming.start();
      await claiming.waitConnected(ids.length, 30_000);
      const s = claiming.stats();
      expect({ claims: s.claims, refused: s.claimRefused, errors: s.claimErrors, connackFailures: s.connackFailures }).toEqual({ claims: ids.length, refused: 0, errors: 0, connackFailures: 0 });
      await waitUntil(() => ids.every((id) => cp.services.devices.get(id)?.status === 'online'), 'the claimed devices online', 30_000);
    } finally {
      await claiming.stop();
    }
  });

  it('asks the chunk server for artifact chunks and gets every one, each matching its hash', async () => {
    const model = buildBackboneModel({ side: 16, hidden: 32, seed: 3 });
    const registered = await registerModel(api(), 'fleet-sim-chunks', '1.0.0', model.metadata, model.bytes);
    const ids = ['sim-chunk-0', 'sim-chunk-1', 'sim-chunk-2', 'sim-chunk-3'];
    const loader = new FleetSimulator({
      url: `mqtt://127.0.0.1:${cp.mqttPort}`,
      devices: await Promise.all(ids.map(async (deviceId) => ({ deviceId, password: (await freshDeviceCredentials(cp, deviceId)).password }))),
      artifact: { sha256: registered.sha256, length: registered.length, chunkBytes: 16 * 1024, intervalMs: 50 },
    });
    try {
      loader.start();
      await loader.waitConnected(ids.length, 30_000);
      await waitUntil(() => loader.stats().chunkFrames >= 40, '40 chunk frames', 30_000);
      const s = loader.stats();
      expect({ errors: s.chunkErrors, bad: s.chunkBad }).toEqual({ errors: 0, bad: 0 });
      expect(s.chunkBytes).toBeGreaterThan(0);
    } finally {
      await loader.stop();
    }
  });
});

