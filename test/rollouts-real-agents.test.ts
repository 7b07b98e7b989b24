import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDemoModel, type ControlPlane } from '@perch/control-plane';
import type { ModelMetadataInput } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rebadged } from '../bench/lib/rebadged-model.js';
import { mentions, RealAgentFleet } from './support/real-agent-fleet.js';
import { registerModel } from './support/registry-api.js';
import { RolloutFleet, type ModelBehaviour } from './support/rollout-fleet.js';
import { rolloutsApi } from './support/rollouts-api.js';
import { bareSlowdown, constantModel, slowedModel, unstableModel } from './support/rollout-models.js';
import { startTestControlPlane, type TestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * Staged rollouts on a fleet of 50: ten real agent processes (the compiled
 * CLI, onnxruntime in a worker, an ffmpeg camera each, their own
 * credentials) and forty simulated devices, against a real control plane
 * with its broker and SQLite. A good model passes every stage of the whole
 * fleet. Three bad models, each built from the demo classifier and judged
 * by what the real agents do with it — one the agents refuse to load (its
 * golden answer is never the same twice), one five times slower, one that
 * predicts garbage — are stopped at the first stage of a rollout to the ten
 * real agents and rolled back by the control plane alone, and no device
 * outside the canary ever receives them: by the control plane's records,
 * every reported state the agents sent, the agents' own logs and the
 * simulated devices' own records. In shadow mode on the agents an identical
 * challenger agrees on nearly every frame and a garbage one on few.
 */
const REAL = 10;
const SIM = 40;
const MODEL = 'park-classifier';
const GARBAGE = '6.0.0-garbage';
/** The gates of the rollouts judged by the real agents alone: a low frame count, as they run at 2 fps. */
const REAL_GATES = { minFrames: 30 };

const realIds = Array.from({ length: REAL }, (_, i) => `gw-${String(i).padStart(2, '0')}`);
const simIds = Array.from({ length: SIM }, (_, i) => `sim-${String(i).padStart(2, '0')}`);
const shadowA = realIds.slice(0, REAL / 2);
const shadowB = realIds.slice(REAL / 2);

/** Top-1 labels of one simulated window of 40 frames. */
const SCENE = Array.from({ length: 40 }, (_, i) => (i % 10 < 6 ? 'cat' : i % 10 < 9 ? 'dog' : 'empty'));
const normal: ModelBehaviour = { deploy: 'active', labels: SCENE, latencyMs: 20 };

let dir: string;
let site: TestControlPlane;
let cp: ControlPlane;
let agents: RealAgentFleet;
let sims: RolloutFleet;
let demoBytes: Buffer;
let metadata: ModelMetadataInput & { labels: string[] };
const sha: Record<string, string> = {};
let slowRatio = 0;

const { detail, members, start, settle } = rolloutsApi(() => site.api, () => site.adminToken);

const reported = (id: string) => cp.services.devices.get(id)?.reported ?? null;

/** Every real agent runs `model` and has passed its health window. */
async function agentsSettledOn(model: string, ids = realIds): Promise<void> {
  await waitUntil(
    () => ids.every((id) => reported(id)?.active?.sha256 === sha[model] && reported(id)?.deployment.phase === 'active'),
    `agents ${ids.join(', ')} active on ${model}`,
    90_000,
  ).catch((err: Error) => {
    const late = ids.filter((id) => reported(id)?.deployment.phase !== 'active' || reported(id)?.active?.sha256 !== sha[model]);
    throw new Error(`${err.message}\n${late.map((id) => `${id}: ${JSON.stringify(reported(id)?.deployment)}\n${agents.agent(id).tail(8)}`).join('\n')}`);
  });
}

/** Frames each device inferred on `model` (by its windows in the control plane's database). */
function framesOn(deviceId: string, model: string): number {
  const row = cp.db
    .prepare("SELECT COALESCE(SUM(json_extract(c.value, '$.framesInferred')), 0) AS n FROM telemetry_windows w, json_each(w.payload_json, '$.cameras') c WHERE w.device_id = ? AND w.model_sha256 = ?")
    .get(deviceId, sha[model]) as { n: number };
  return row.n;
}

/**
 * Devices that ever received the model `sha256` after `since`, from every
 * side: the real agents' reported states and logs (each desired state an
 * agent works on is logged with its target's sha256), the telemetry it sent
 * while running it, and what each simulated device recorded being sent.
 */
function receivedBy(model: string, since: number, mark: ReadonlyMap<string, number>): string[] {
  const s = sha[model] as string;
  const out = new Set<string>();
  for (const id of realIds) {
    if (agents.reported(id, since).some((r) => mentions(r.state, s))) out.add(id);
    // Lines that say the box took the model on (not, say, a metadata refresh that lists every target).
    if (agents.logSince(id, mark).some((line) => line.includes(s) && /desired state accepted|challenger|download/.test(line))) out.add(id);
  }
  const ran = cp.db.prepare('SELECT DISTINCT device_id FROM telemetry_windows WHERE model_sha256 = ? AND received_at >= ?').pluck().all(s, since) as string[];
  for (const id of ran) out.add(id);
  for (const id of simIds) if (sims.box(id).desired.some((d) => d.at >= since && (d.active === s || d.shadow === s))) out.add(id);
  return [...out].sort();
}

/** The label the real agents' models predicted least on their cameras. */
function rarestLabel(): number {
  const counts = new Map(metadata.labels.map((l) => [l, 0]));
  for (const id of realIds) {
    for (const w of cp.services.telemetry.recent(id, 200)) {
      for (const cam of w.window.cameras) for (const [label, n] of Object.entries(cam.classCounts)) counts.set(label, (counts.get(label) ?? 0) + n);
    }
  }
  const [label] = [...counts].sort((a, b) => a[1] - b[1])[0] as [string, number];
  return metadata.labels.indexOf(label);
}

/**
 * Registers the garbage model, once: the same input and output as the demo
 * model and one answer for every frame, the label the agents' cameras show
 * least (so it is plainly wrong there). Registered after the agents ran, as
 * their predictions pick the label.
 */
async function registerGarbage(): Promise<void> {
  if (sha[GARBAGE]) return;
  const bytes = constantModel(demoBytes, metadata.output.name, rarestLabel(), metadata.labels.length);
  sha[GARBAGE] = (await registerModel(site, MODEL, GARBAGE, metadata, bytes)).sha256;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-rollouts-real-'));
  // The demo classifier (64x64 input), from the cache the other end-to-end tests share.
  const demo = await buildDemoModel({ outDir: join(tmpdir(), 'perch-test-assets', 'model') });
  demoBytes = readFileSync(demo.modelPath);
  metadata = JSON.parse(readFileSync(demo.metadataPath, 'utf8')) as typeof metadata;
  const output = demo.metadata.output.name;
  const input = demo.metadata.input.name;

  // At least five times slower in bare onnxruntime: the dead branch is deepened until it is eight times slower, since on a
  // busy box the scheduler's delays add the same milliseconds to both models' runs and shrink the ratio the fleet sees.
  let slow: Buffer | null = null;
  let baseMs = 0;
  for (let depth = 32; depth <= 1024 && slowRatio < 8; depth = Math.round(depth * 1.5)) {
    slow = slowedModel(demoBytes, output, input, { width: 256, depth });
    ({ ratio: slowRatio, baseMs } = await bareSlowdown(demoBytes, slow, metadata));
  }
  expect(slowRatio, 'the slow model is not five times slower in bare onnxruntime').toBeGreaterThanOrEqual(5);
  console.log(`[rollout-real] demo model ${baseMs.toFixed(2)} ms per frame in bare onnxruntime; the slow one ${slowRatio.toFixed(1)}x that`);

  site = await startTestControlPlane(dir, { rollouts: { tickSeconds: 0.25 } });
  cp = site.cp;
  const versions: [string, Uint8Array][] = [
    ['1.0.0', demoBytes],
    ['2.0.0', rebadged(demoBytes, 'good')],
    ['3.0.0-unloadable', unstableModel(demoBytes, output)],
    ['4.0.0-slow', slow ?? demoBytes],
    ['5.0.0-twin', rebadged(demoBytes, 'twin')],
  ];
  for (const [v, bytes] of versions) sha[v] = (await registerModel(site, MODEL, v, metadata, bytes)).sha256;

  agents = new RealAgentFleet(cp, { dir, rootFile: site.rootFile });
  for (const [i, id] of realIds.entries()) agents.add(id, (await cp.issueDeviceCredentials(id, { tags: ['park', 'real', i < REAL / 2 ? 'shadow-a' : 'shadow-b'] })).password);
  agents.start();
  // The simulated devices behave normally with every model they may be sent (the bad ones are only ever rolled out to real agents).
  sims = new RolloutFleet(`mqtt://127.0.0.1:${cp.mqttPort}`, new Map(), normal);
  for (const id of simIds) sims.add(id, (await cp.issueDeviceCredentials(id, { tags: ['park', 'sim'] })).password);
  await sims.connect();
  sims.startTelemetry(1000);
  await waitUntil(() => realIds.every((id) => cp.services.devices.get(id)?.status === 'online'), 'every agent online', 90_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${realIds.map((id) => `${id}: ${agents.agent(id).tail(5)}`).join('\n')}`);
  });

  // The whole fleet on 1.0.0, long enough for a baseline.
  for (const id of [...realIds, ...simIds]) await cp.services.desired.setActiveModel(id, { name: MODEL, version: '1.0.0' });
  await agentsSettledOn('1.0.0');
  await waitUntil(() => simIds.every((id) => reported(id)?.active?.sha256 === sha['1.0.0']), 'every simulated device on 1.0.0');
  await waitUntil(() => realIds.every((id) => framesOn(id, '1.0.0') >= 6), 'a few frames of 1.0.0 on every agent', 60_000);
}, 240_000);

afterAll(async () => {
  await agents?.stop();
  await sims?.stop();
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('staged rollouts with 10 real agents and 40 simulated devices', () => {
  it('takes a good model through every stage of the 50-device fleet, each stage judged once every device in it ran the model', async () => {
    const since = Date.now();
    const id = await start({
      name: 'good model',
      model: { name: MODEL, version: '2.0.0' },
      target: { tags: ['park'] },
      stages: [
        { percent: 10, soakSeconds: 1 },
        { percent: 50, soakSeconds: 1 },
        { percent: 100, soakSeconds: 1 },
      ],
      // Every device of a stage, real agents included, must report the candidate before its data gates may pass.
      gates: { minDevicePercent: 100 },
    });
    const done = await settle(id, ['completed', 'paused', 'rolling-back', 'rolled-back']);
    expect(done.state, done.reason ?? '').toBe('completed');
    expect(done.events.map((e) => e.type)).toEqual(['created', 'stage-started', 'stage-passed', 'stage-passed', 'completed']);
    const rows = await members(id);
    for (const [i, s] of done.stages.entries()) {
      expect(s.status).toBe('passed');
      const gates = Object.fromEntries(s.gates.map((g) => [g.gate, g]));
      for (const gate of ['deployment', 'min-devices', 'min-frames', 'error-rate', 'latency-p95-ratio', 'skipped-frames']) expect(gates[gate]?.verdict, gate).toBe('pass');
      expect(['pass', 'skip'], 'prediction-js').toContain(gates['prediction-js']?.verdict);
      // Each device of the cohort reported telemetry on the candidate.
      expect(gates['min-devices']?.value).toBe(rows.filter((r) => r.stage <= i).length);
    }
    expect(rows.map((r) => r.deviceId).sort()).toEqual([...realIds, ...simIds].sort());
    await agentsSettledOn('2.0.0');
    for (const s of simIds) expect(reported(s)?.active?.sha256, s).toBe(sha['2.0.0']);
    expect(receivedBy('2.0.0', since, new Map())).toEqual([...realIds, ...simIds].sort());
  }, 150_000);

  for (const bad of [
    { version: '3.0.0-unloadable', what: 'the agents refuse to load', gate: 'deployment', gates: {} },
    { version: GARBAGE, what: 'predicts garbage', gate: 'prediction-js', gates: {} },
    // A p95 over 30 frames is their second slowest: the latency gate gets more, so one busy moment of the box decides less.
    { version: '4.0.0-slow', what: 'is five times slower', gate: 'latency-p95-ratio', gates: { minFrames: 90 } },
  ]) {
    it(`stops a model that ${bad.what} at the first stage and rolls the canary back by itself`, async () => {
      if (bad.version === GARBAGE) await registerGarbage();
      await agentsSettledOn('2.0.0');
      // Enough of 2.0.0 on every agent for a latency and prediction baseline.
      await waitUntil(() => realIds.every((r) => framesOn(r, '2.0.0') >= 20), 'a baseline of 2.0.0 on every agent', 60_000);
      const since = Date.now();
      const mark = agents.logMark();

      const id = await start({
        name: `bad: ${bad.what}`,
        model: { name: MODEL, version: bad.version },
        target: { tags: ['real'] },
        stages: [
          { count: 3, soakSeconds: 30 },
          { count: REAL, soakSeconds: 1 },
        ],
        gates: { ...REAL_GATES, ...bad.gates },
      });
      const d = await settle(id, ['rolled-back', 'completed', 'paused']);
      expect(d.state, d.reason ?? '').toBe('rolled-back');
      expect(d.events.map((e) => e.type)).toEqual(['created', 'stage-started', 'rolling-back', 'rolled-back']);
      expect(d.events.every((e) => e.stage === 0)).toBe(true);
      expect(d.reason).toContain(bad.gate);
      const failed = d.stages[0]!.gates.find((g) => g.gate === bad.gate);
      expect(failed?.verdict).toBe('fail');
      console.log(`[rollout-real] ${bad.version}: ${d.reason}`);

      // The canary: three real agents, each sent the model and each back on 2.0.0 by a signed rollback.
      const canary = (await members(id)).map((m) => m.deviceId).sort();
      expect(canary).toHaveLength(3);
      for (const c of canary) {
        expect(realIds).toContain(c);
        expect(cp.services.desired.get(c)?.envelope.signed).toMatchObject({ active: { hashes: { sha256: sha['2.0.0'] } }, rollback: true });
        expect(reported(c)?.active?.sha256, c).toBe(sha['2.0.0']);
      }
      // No device outside the canary ever received it: not by the control plane, nor the agents' reports and logs, nor the simulated devices.
      expect(receivedBy(bad.version, since, mark)).toEqual(canary);

      const seenBad = (c: string) => agents.reported(c, since).map((r) => r.state).filter((s) => s.deployment.target?.sha256 === sha[bad.version]);
      if (bad.version === '3.0.0-unloadable') {
        // Refused on the device at its golden check, after the download: the model never ran there.
        const reasons = (failed?.detail?.failures as { deviceId: string; phase: string; reason?: string }[]) ?? [];
        expect(reasons.length).toBeGreaterThan(0);
        for (const f of reasons) expect(f).toMatchObject({ phase: 'rejected', reason: expect.stringMatching(/golden input/) });
        for (const f of reasons) expect(seenBad(f.deviceId).some((s) => s.deployment.phase === 'rejected'), f.deviceId).toBe(true);
        for (const c of canary) expect(agents.reported(c, since).some((r) => r.state.active?.sha256 === sha[bad.version]), c).toBe(false);
      } else {
        // Ran on the canary (it passed the agents' own checks: golden input, health window) until the control plane took it back.
        const ran = canary.filter((c) => agents.reported(c, since).some((r) => r.state.active?.sha256 === sha[bad.version]));
        expect(ran.length).toBeGreaterThanOrEqual(2);
        if (bad.version === '4.0.0-slow') console.log(`[rollout-real] latency gate on real agents: ${JSON.stringify(failed?.detail)} (bare onnxruntime ratio ${slowRatio.toFixed(1)})`);
        else console.log(`[rollout-real] prediction gate on real agents: ${failed?.value} ${JSON.stringify(failed?.detail)}`);
        // From the canary's first window of the bad model to every canary device reporting 2.0.0 again.
        const firstBad = cp.db.prepare('SELECT MIN(received_at) FROM telemetry_windows WHERE model_sha256 = ? AND received_at >= ?').pluck().get(sha[bad.version], since) as number;
        const back = Math.max(...ran.map((c) => agents.reported(c, since).find((r, i, all) => r.state.active?.sha256 === sha['2.0.0'] && all.slice(0, i).some((p) => p.state.active?.sha256 === sha[bad.version]))?.at ?? Number.NaN));
        expect(Number.isFinite(back - firstBad)).toBe(true);
        console.log(`[rollout-real] ${bad.version}: first bad window -> all ${ran.length} canary agents back on 2.0.0: ${back - firstBad} ms`);
      }
      await agentsSettledOn('2.0.0');
    }, 150_000);
  }

  it('in shadow mode on the agents: an identical challenger agrees on nearly every frame, a garbage one on few and is stopped', async () => {
    await registerGarbage();
    await agentsSettledOn('2.0.0');
    const since = Date.now();
    const mark = agents.logMark();
    // Agreement is judged here. The latency gate is off: the p95 of a sub-millisecond model on a busy shared box is mostly the
    // scheduler's delays, and identical models were seen from a third to eight times apart (the slow model's test judges latency).
    // Every device of a phase must send shadow data before it is judged: with the default half, a phase could be decided (and the
    // challenger withdrawn) while a device of a busy box still loaded it, which then never ran it as the checks below require.
    const gates = { ...REAL_GATES, latency: null, minDevicePercent: 100 };
    const twin = await start({
      name: 'identical challenger',
      model: { name: MODEL, version: '5.0.0-twin' },
      target: { tags: ['shadow-a'] },
      mode: 'shadow-then-replace',
      shadow: { sampleRate: 1, soakSeconds: 2 },
      stages: [{ percent: 100, soakSeconds: 1 }],
      gates,
    });
    const garbage = await start({
      name: 'garbage challenger',
      model: { name: MODEL, version: GARBAGE },
      target: { tags: ['shadow-b'] },
      mode: 'shadow-then-replace',
      shadow: { sampleRate: 1, soakSeconds: 30 },
      stages: [
        { count: 2, soakSeconds: 1 },
        { count: shadowB.length, soakSeconds: 1 },
      ],
      gates,
    });
    const [t, g] = await Promise.all([settle(twin, ['completed', 'rolled-back', 'paused']), settle(garbage, ['rolled-back', 'completed', 'paused'])]);

    // The twin: agreement near 100 % on the agents' own frames, then it replaced the champion.
    expect(t.state, t.reason ?? '').toBe('completed');
    const agreed = t.stages[0]!.history.filter((e) => e.gate === 'shadow-agreement' && e.phase === 'shadow' && e.verdict === 'pass');
    expect(agreed.length).toBeGreaterThan(0);
    expect(agreed.at(-1)!.value).toBeGreaterThanOrEqual(0.99);
    expect(t.stages[0]!.history.filter((e) => e.gate === 'min-devices' && e.phase === 'shadow' && e.verdict === 'pass').at(-1)?.value).toBe(shadowA.length);
    console.log(`[rollout-real] shadow agreement of an identical challenger on ${shadowA.length} agents: ${agreed.at(-1)!.value}`);
    for (const c of shadowA) expect(agents.reported(c, since).some((r) => r.state.shadow?.target.sha256 === sha['5.0.0-twin'] && r.state.shadow?.phase === 'running'), c).toBe(true);
    await agentsSettledOn('5.0.0-twin', shadowA);

    // The garbage challenger: low agreement, stopped in the first stage's shadow phase; no agent ever ran it as champion.
    expect(g.state, g.reason ?? '').toBe('rolled-back');
    expect(g.reason).toContain('shadow-agreement');
    const agreement = g.stages[0]!.gates.find((e) => e.gate === 'shadow-agreement')!;
    expect(agreement.verdict).toBe('fail');
    expect(agreement.value).toBeLessThan(0.5);
    console.log(`[rollout-real] shadow agreement of a garbage challenger: ${agreement.value}`);
    const canary = (await members(garbage)).map((m) => m.deviceId).sort();
    expect(canary).toHaveLength(2);
    expect(g.stages[0]!.gates.find((e) => e.gate === 'min-devices')?.value).toBe(canary.length);
    expect(receivedBy(GARBAGE, since, mark)).toEqual(canary);
    for (const c of realIds) expect(agents.reported(c, since).some((r) => r.state.active?.sha256 === sha[GARBAGE]), c).toBe(false);
    for (const c of canary) {
      expect(agents.reported(c, since).some((r) => r.state.shadow?.target.sha256 === sha[GARBAGE] && r.state.shadow?.phase === 'running'), c).toBe(true);
      expect(cp.services.desired.get(c)?.envelope.signed).toMatchObject({ active: { hashes: { sha256: sha['2.0.0'] } } });
      expect(cp.services.desired.get(c)?.envelope.signed.shadow).toBeUndefined();
    }
    await agentsSettledOn('2.0.0', shadowB);
    // Longer than its waits together (settling, then each cohort's agents), so that on a loaded box the slow step is named.
  }, 300_000);

  it('never sent anything to a simulated device but 1.0.0 and the good model', () => {
    for (const id of simIds) expect(sims.box(id).desired.map((d) => d.active)).toEqual([sha['1.0.0'], sha['2.0.0']]);
  });
});
