import { emptyHistogram, generateSigningKey, LATENCY_SPEC, modelTargetPath, observe, telemetryWindowSchema, type ModelTarget, type ReportedState } from '@perch/shared';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../broker/test-support/broker-harness.js';
import { ControlPlaneBus } from '../bus/control-plane-bus.js';
import { DesiredStateService } from '../desired-state/desired-state-service.js';
import { DesiredStateStore } from '../store/desired-state-store.js';
import { DeviceLabelStore } from '../store/device-label-store.js';
import { DeviceStore } from '../store/device-store.js';
import { ModelVersionStore, type ModelVersionRecord } from '../store/model-version-store.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { tempDatabase } from '../test-support/telemetry-windows.js';
import { RolloutFeature } from './rollout-feature.js';
import type { RolloutRecord } from './rollout-store.js';
import { tinyMetadata } from './test-support/tiny-classifier.js';

/**
 * The engine on a real stack (SQLite, a real broker and the control plane's
 * MQTT client, signed desired states) with its clock in the test's hands:
 * soaks end when the clock says so and not before, waiting for data turns
 * into failing only past the deadline, and an engine made again on the same
 * database (a restart) carries on where the first stopped. Devices' reports
 * and windows are written as the ingest handlers write them.
 */
const silent = pino({ level: 'silent' });
const t0 = Date.now();
let clock = t0;
const at = (seconds: number) => (clock = t0 + seconds * 1000);

const db = tempDatabase('perch-rollout-engine-');
let broker: TestBroker;
let bus: ControlPlaneBus;
let devices: DeviceStore;
let versions: ModelVersionStore;
let telemetry: TelemetryStore;
let desired: DesiredStateService;
let v1: ModelVersionRecord;
let v2: ModelVersionRecord;
const seqs = new Map<string, number>();
const ids = Array.from({ length: 20 }, (_, i) => `box-${String(i).padStart(2, '0')}`);

function version(name: string, v: string, sha: string, createdAt: number): ModelVersionRecord {
  const target: ModelTarget = {
    path: modelTargetPath(name, v),
    length: 100,
    hashes: { sha256: sha },
    custom: { name, version: v, format: 'onnx', metadata: tinyMetadata, createdAt: new Date(createdAt).toISOString() },
  };
  return versions.insert({ name, version: v, sha256: sha, length: 100, metadata: tinyMetadata, target, createdAt });
}

function feature(): RolloutFeature {
  return new RolloutFeature({ tickSeconds: 300, webhooks: [] }, { db: db.db, devices, versions, desired, publish: (topic, payload) => bus.publish(topic, payload, { qos: 1 }), log: silent, now: () => clock });
}

/** What a device reports after handling `generation`: running `model`, or refusing it. */
function report(deviceId: string, generation: number, model: ModelVersionRecord, phase: 'active' | 'failed' = 'active', running = model): void {
  const ref = (m: ModelVersionRecord) => ({ name: m.name, version: m.version, sha256: m.sha256 });
  const state: ReportedState = {
    deviceId,
    agentVersion: 'test',
    at: clock,
    acceptedGeneration: generation,
    active: ref(running),
    deployment: { phase, generation, target: ref(model), at: clock },
    cameras: [],
  };
  devices.setReported(state, clock);
  devices.setStatus({ deviceId, state: 'online', since: clock }, clock);
}

/** A window of 50 frames of `model` from `deviceId`, received now by the engine's clock. */
function window(deviceId: string, model: ModelVersionRecord, latencyMs: number): void {
  const seq = seqs.get(deviceId) ?? 0;
  seqs.set(deviceId, seq + 1);
  const latency = emptyHistogram(LATENCY_SPEC);
  observe(latency, latencyMs, 50);
  const w = telemetryWindowSchema.parse({
    deviceId,
    seq,
    windowStart: clock - 10_000,
    windowEnd: clock,
    model: { name: model.name, version: model.version, sha256: model.sha256 },
    cameras: [{ cameraId: 'cam', framesReceived: 50, framesInferred: 50, framesDropped: 0, inferenceErrors: 0, classCounts: { cat: 30, dog: 15, empty: 5 }, confidence: emptyHistogram('confidence.v1'), latencyMs: latency }],
  });
  telemetry.insertWindow(w, clock);
}

const generation = (deviceId: string) => desired.get(deviceId)?.generation ?? 0;
const activeSha = (deviceId: string) => desired.get(deviceId)?.envelope.signed.active?.hashes.sha256 ?? null;

beforeAll(async () => {
  broker = await startTestBroker();
  bus = new ControlPlaneBus({ url: broker.url, ...broker.controlPlane, clientId: 'cp-engine-test' }, silent);
  await bus.start([]);
  devices = new DeviceStore(db.db);
  versions = new ModelVersionStore(db.db);
  telemetry = new TelemetryStore(db.db);
  const key = generateSigningKey();
  desired = new DesiredStateService(new DesiredStateStore(db.db), devices, versions, bus, () => [key], silent);
  v1 = version('pets', '1.0.0', '1'.repeat(64), t0 - 60_000);
  v2 = version('pets', '2.0.0', '2'.repeat(64), t0 - 30_000);
  const labels = new DeviceLabelStore(db.db);
  // Every box runs 1.0.0 and has sent an hour's worth of baseline.
  at(-120);
  for (const id of ids) {
    await desired.setActiveModel(id, { name: 'pets', version: '1.0.0' });
    labels.add(id, { tags: ['yard'] });
    report(id, generation(id), v1);
    window(id, v1, 20);
  }
});

afterAll(async () => {
  await bus?.stop();
  await broker?.stop();
  db.close();
});

describe('rollout engine, on its own clock', () => {
  let id: string;
  let canary: string[];

  it('passes a stage only when its soak is over, then takes the next one in', async () => {
    at(0);
    const f = feature();
    const r: RolloutRecord = await f.engine.create(
      { model: { name: 'pets', version: '2.0.0' }, target: { tags: ['yard'] }, stages: [{ percent: 10, soakSeconds: 600 }, { percent: 100, soakSeconds: 600 }], gates: { minFrames: 100 } },
      'test',
    );
    id = r.id;
    await f.engine.tick();
    canary = f.store.assignments(id).map((a) => a.deviceId);
    // 10 % of 20 is two, and any other device whose hash falls under 0.1.
    expect(canary.length).toBeGreaterThanOrEqual(2);
    expect(canary.length).toBeLessThan(8);
    for (const d of ids) expect(activeSha(d), d).toBe(canary.includes(d) ? v2.sha256 : v1.sha256);

    // The canary runs it well; ten minutes are not over.
    at(30);
    for (const d of canary) {
      report(d, generation(d), v2);
      window(d, v2, 21);
    }
    for (const d of ids.filter((x) => !canary.includes(x))) window(d, v1, 20);
    await f.engine.tick();
    expect(f.store.get(id)).toMatchObject({ state: 'running', stageIndex: 0 });
    const evals = f.store.evaluations(id);
    expect(evals.filter((e) => e.verdict === 'fail')).toEqual([]);
    expect(evals.findLast((e) => e.gate === 'latency-p95-ratio')).toMatchObject({ verdict: 'pass', value: 1 });

    at(599);
    await f.engine.tick();
    expect(f.store.get(id)?.stageIndex).toBe(0);
    at(601);
    await f.engine.tick();
    const now = f.store.get(id)!;
    expect(now).toMatchObject({ state: 'running', stageIndex: 1, phaseStartedAt: t0 + 601_000 });
    expect(f.store.events(id).map((e) => e.type)).toEqual(['created', 'stage-started', 'stage-passed']);
    // The move and the next stage's devices come in the same tick.
    expect(f.store.assignments(id)).toHaveLength(20);
    await f.stop();
  });

  it('carries on after a restart without issuing anything again, and rolls back every device when a gate fails', async () => {
    const before = new Map(ids.map((d) => [d, generation(d)]));
    const f = feature();
    at(610);
    await f.engine.tick();
    expect(f.store.get(id)).toMatchObject({ state: 'running', stageIndex: 1, phaseStartedAt: t0 + 601_000 });
    for (const d of ids) expect(generation(d), d).toBe(before.get(d));

    // Half the new devices cannot deploy it.
    const fresh = ids.filter((d) => !canary.includes(d));
    fresh.forEach((d, i) => report(d, generation(d), v2, i % 2 === 0 ? 'failed' : 'active', i % 2 === 0 ? v1 : v2));
    await f.engine.tick();
    const r = f.store.get(id)!;
    expect(r.state).toBe('rolling-back');
    expect(r.reason).toMatch(/gate failed: deployment (\d+)/);
    expect(Number(/deployment (\d+)/.exec(r.reason ?? '')?.[1])).toBeGreaterThan(30);
    // Everyone is sent back to 1.0.0, signed as a rollback.
    for (const d of ids) {
      expect(activeSha(d), d).toBe(v1.sha256);
      expect(desired.get(d)?.envelope.signed.rollback, d).toBe(true);
    }
    expect(f.store.get(id)?.state).toBe('rolling-back');
    for (const d of ids) report(d, generation(d), v1);
    await f.engine.tick();
    expect(f.store.get(id)?.state).toBe('rolled-back');
    expect(f.store.events(id).map((e) => e.type)).toEqual(['created', 'stage-started', 'stage-passed', 'rolling-back', 'rolled-back']);
    await f.stop();
  });

  it('waits for data, and fails only once the deadline past the soak is over', async () => {
    const f = feature();
    at(1000);
    const r = await f.engine.create(
      { model: { name: 'pets', version: '2.0.0' }, target: { tags: ['yard'] }, stages: [{ count: 3, soakSeconds: 60 }], gates: { insufficientDataDeadlineSeconds: 120 }, onFail: 'pause' },
      'test',
    );
    await f.engine.tick();
    // The devices take it but send no window of it.
    for (const a of f.store.assignments(r.id)) report(a.deviceId, generation(a.deviceId), v2);
    at(1000 + 179);
    await f.engine.tick();
    expect(f.store.get(r.id)?.state).toBe('running');
    const waiting = f.store.evaluations(r.id).filter((e) => e.verdict === 'wait').map((e) => e.gate);
    expect(waiting).toEqual(expect.arrayContaining(['min-devices', 'min-frames']));
    at(1000 + 181);
    await f.engine.tick();
    expect(f.store.get(r.id)).toMatchObject({ state: 'paused', reason: expect.stringMatching(/^insufficient data past the deadline: .*min-frames/) });
    // Paused: nothing more is issued, and the operator may roll it back.
    const gens = ids.map(generation);
    await f.engine.tick();
    expect(ids.map(generation)).toEqual(gens);
    expect((await f.engine.act(r.id, 'rollback', 'test')).state).toBe('rolling-back');
    await f.stop();
  });
});
