import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger, loadControlPlaneConfig } from '@perch/control-plane';
import mqtt from 'mqtt';
import { claimantUsername, deviceTopic } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PayloadLimits } from '../packages/control-plane/src/broker/payload-limits.js';
import { auditStore } from '../bench/lib/fleet-audit.js';
import { TelemetryWindowFactory, FLEET_MODEL } from '../bench/lib/fleet-windows.js';
import { runFuzz } from '../bench/lib/fuzz-sender.js';
import { FUZZ_KINDS, MUTATIONS } from '../bench/lib/payload-fuzzer.js';
import { freshDeviceCredentials } from './support/device-credentials.js';
import { waitUntil } from './support/wait-until.js';

/**
 * About 2,000 malformed, schema-invalid, oversized and valid payloads of
 * every device-to-cloud kind (bench/lib/payload-fuzzer.ts, seeded, so the
 * same every run) published at QoS 1 through the real embedded broker to a
 * real control plane from real device connections, a claimant, and packets
 * over the broker's socket-level cap. The contract decides what must happen
 * to each; the control plane must do exactly that, log every refusal, keep
 * running, store nothing that breaks a schema, leave Object.prototype alone,
 * and still take a valid window afterwards. bench/fuzz-payloads.ts runs the
 * same with 100,000.
 */
const TOTAL = 2000;
const SEED = 20_240_601;
const DROPPED_LINE = '"msg":"dropped device message"';

let dir: string;
let cp: ControlPlane;
const log = { dropped: 0, tail: [] as string[] };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-payload-fuzz-'));
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { dataDir: join(dir, 'cp'), mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'warn' } },
  });
  // The control plane's log, counted: every refused payload must leave a line saying why.
  const destination = {
    write(line: string): void {
      if (line.includes(DROPPED_LINE)) log.dropped++;
      else log.tail = [...log.tail.slice(-49), line];
    },
  };
  cp = new ControlPlane(config, createLogger('warn', 'perch-control-plane', destination));
  await cp.start();
});

afterAll(async () => {
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('payload fuzzing', () => {
  it('refuses or accepts each of ~2,000 fuzzed payloads as the contract says, stores nothing invalid and keeps running', async () => {
    const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).sort();
    const devices = await Promise.all(['fuzz-0', 'fuzz-1', 'fuzz-2', 'fuzz-3'].map(async (deviceId) => ({ deviceId, password: (await freshDeviceCredentials(cp, deviceId)).password })));
    const before = { dispatch: { ...cp.stats.dispatch }, broker: { ...cp.stats.broker } };
    const cuts = 3;
    const r = await runFuzz({
      url: `mqtt://127.0.0.1:${cp.mqttPort}`,
      devices,
      claimant: { deviceId: 'fuzz-claimant', username: claimantUsername(cp.claimToken), password: cp.claimToken },
      cutter: { deviceId: 'fuzz-cutter', password: (await freshDeviceCredentials(cp, 'fuzz-cutter')).password },
      total: TOTAL,
      seed: SEED,
      maxPacketBytes: new PayloadLimits().maxPacketBytes,
      cuts,
    });

    // Everything went out and was acknowledged on connections that stayed up.
    expect(r.sent).toBe(TOTAL);
    expect(r.acked).toBe(TOTAL);
    expect(r.publishErrors).toBe(0);
    expect(r.unexpectedCloses).toBe(0);
    // Every kind both refused and accepted, so both paths of every handler ran.
    for (const kind of FUZZ_KINDS) expect([r.byKind[kind].accepted > 0, r.byKind[kind].refused > 0], kind).toEqual([true, true]);
    for (const m of MUTATIONS) expect(r.byMutation[m].sent, m).toBeGreaterThan(0);
    expect(r.expected.accepted).toBeGreaterThan(100);
    expect(r.expected.refused).toBeGreaterThan(1000);
    expect(r.expected.oversize).toBeGreaterThan(0);
    expect(r.telemetryKeys.size).toBeGreaterThan(20);

    // The dispatcher handled what the contract accepts and dropped what it refuses, no more and no less.
    const delta = () => ({ handled: cp.stats.dispatch.handled - before.dispatch.handled, dropped: cp.stats.dispatch.dropped - before.dispatch.dropped });
    await waitUntil(() => delta().handled + delta().dropped >= r.expected.accepted + r.expected.refused, 'the control plane to have dispatched every payload', 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(delta()).toEqual({ handled: r.expected.accepted, dropped: r.expected.refused });
    expect(log.dropped).toBe(r.expected.refused);
    expect(cp.stats.broker.oversizePublishes - before.broker.oversizePublishes).toBe(r.expected.oversize);
    expect(r.cuts).toEqual({ sent: cuts, closed: cuts, reconnected: true });
    expect(cp.stats.broker.oversizePackets - before.broker.oversizePackets).toBe(cuts);

    // Stored: exactly the accepted windows and events, and every stored row valid.
    await cp.services.fleet.ingest.flush();
    expect(cp.stats.telemetry.failedBatches).toBe(0);
    const ids = [...devices.map((d) => d.deviceId), 'fuzz-claimant'];
    const audit = auditStore(cp.db, ids, true);
    expect(new Set(audit.telemetryKeys)).toEqual(r.telemetryKeys);
    expect(new Set(audit.eventKeys)).toEqual(r.eventKeys);
    expect(audit.telemetryRows).toBe(r.telemetryKeys.size);
    expect(audit.eventRows).toBe(r.eventKeys.size);
    expect({ telemetry: audit.telemetryInvalid, events: audit.eventsInvalid, reported: audit.reportedInvalid }).toEqual({ telemetry: 0, events: 0, reported: 0 });
    expect(audit.prototypeKeys).toEqual(prototypeBefore);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();

    // Still up: a new device's valid window is stored.
    const probe = { deviceId: 'fuzz-probe', password: (await freshDeviceCredentials(cp, 'fuzz-probe')).password };
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: probe.deviceId, username: probe.deviceId, password: probe.password, reconnectPeriod: 0 });
    await client.publishAsync(deviceTopic(probe.deviceId, 'telemetry'), new TelemetryWindowFactory({ cameras: 1, labels: ['cat', 'dog'], fps: 5 }, 10_000).encode(probe.deviceId, 0, 0, Date.now(), FLEET_MODEL, 0), { qos: 1 });
    await client.endAsync();
    await waitUntil(() => cp.services.telemetry.recent(probe.deviceId, 1).length === 1, 'the probe window to be stored', 10_000);
  });
});
