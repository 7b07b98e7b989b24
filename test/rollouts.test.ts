import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger } from '@perch/control-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBackboneModel } from './support/backbone-model.js';
import { registerModel } from './support/registry-api.js';
import { RolloutFleet, type ModelBehaviour } from './support/rollout-fleet.js';
import { rolloutsApi } from './support/rollouts-api.js';
import { startTestControlPlane, type TestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * Staged rollouts against 50 simulated devices (real mqtt.js connections
 * with their own credentials, a real control plane with its broker and
 * SQLite): a good model passes every stage; three bad ones (fails to
 * deploy, five times slower, predicts garbage) are stopped at the first
 * stage and rolled back by the control plane alone, and no device outside
 * the canary is ever sent them; devices offline during a rollout converge
 * when back, a device that joins the target mid-rollout gets the stage
 * reached; shadow mode passes an identical challenger and stops a garbage
 * one before any device runs it; a control plane restarted mid-rollout
 * continues where it was.
 */
const DEVICES = 50;
const MODEL = 'park-classifier';
const WINDOW_MS = 200;

/** Top-1 labels of one window of 40 frames: a park scene, and what a broken model says about it. */
const SCENE = Array.from({ length: 40 }, (_, i) => (i % 10 < 6 ? 'cat' : i % 10 < 9 ? 'dog' : 'empty'));
const GARBAGE = Array.from({ length: 40 }, (_, i) => (i % 10 < 9 ? 'empty' : 'cat'));
const normal: ModelBehaviour = { deploy: 'active', labels: SCENE, latencyMs: 20 };

let dir: string;
let site: TestControlPlane;
let cp: ControlPlane;
let api: string;
let fleet: RolloutFleet;
let hookServer: Server;
const hooked: { type: string; rolloutId: string; stage: number }[] = [];
const sha: Record<string, string> = {};
const ids = Array.from({ length: DEVICES }, (_, i) => `park-${String(i).padStart(2, '0')}`);
const outsiders = ['lab-1', 'lab-2'];

const rollouts = rolloutsApi(() => api, () => site.adminToken);
const { call, detail, members, settle } = rollouts;

async function start(spec: Record<string, unknown>): Promise<string> {
  return rollouts.start({ target: { tags: ['park'] }, ...spec });
}

const reportedSha = (id: string) => cp.services.devices.get(id)?.reported?.active?.sha256 ?? null;

/** Devices whose desired states named `model` as champion since `since`. */
function sentAsActive(model: string, since: number): string[] {
  return [...ids, ...outsiders].filter((id) => fleet.box(id).desired.some((d) => d.at >= since && d.active === model)).sort();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-rollouts-'));
  hookServer = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      hooked.push(JSON.parse(body) as (typeof hooked)[number]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  site = await startTestControlPlane(dir, { rollouts: { tickSeconds: 0.25, webhooks: [{ url: `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/perch` }] } });
  cp = site.cp;
  api = site.api;

  // Seven versions of one model, registered in order (a rollback to an earlier one is signed as one).
  const versions = ['1.0.0', '2.0.0', '3.0.0-fails', '4.0.0-slow', '5.0.0-garbage', '6.0.0-twin', '7.0.0'];
  for (const [i, v] of versions.entries()) {
    const m = buildBackboneModel({ side: 8, hidden: 8, headSeed: 100 + i });
    sha[v] = (await registerModel(site, MODEL, v, m.metadata, m.bytes)).sha256;
  }
  const behaviours = new Map<string, ModelBehaviour>([
    [sha['1.0.0']!, normal],
    [sha['2.0.0']!, normal],
    [sha['3.0.0-fails']!, { ...normal, deploy: 'failed' }],
    [sha['4.0.0-slow']!, { ...normal, latencyMs: 100 }],
    [sha['5.0.0-garbage']!, { ...normal, labels: GARBAGE }],
    [sha['6.0.0-twin']!, normal],
    [sha['7.0.0']!, normal],
  ]);
  fleet = new RolloutFleet(`mqtt://127.0.0.1:${cp.mqttPort}`, behaviours, normal);
  for (const id of ids) fleet.add(id, (await cp.issueDeviceCredentials(id, { tags: ['park'] })).password);
  for (const id of outsiders) fleet.add(id, (await cp.issueDeviceCredentials(id, { tags: ['lab'] })).password);
  await fleet.connect();
  fleet.startTelemetry(WINDOW_MS);

  // The whole fleet on 1.0.0, and running it long enough to have a baseline.
  for (const id of [...ids, ...outsiders]) await cp.services.desired.setActiveModel(id, { name: MODEL, version: '1.0.0' });
  await waitUntil(() => [...ids, ...outsiders].every((id) => reportedSha(id) === sha['1.0.0']), 'every device on 1.0.0');
  await new Promise((r) => setTimeout(r, 1500));
});

afterAll(async () => {
  await fleet?.stop();
  await cp?.stop();
  await new Promise<void>((r) => hookServer?.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('staged rollouts on 50 simulated devices', () => {
  it('takes a good model through every stage; devices offline meanwhile converge when back, a device joining mid-rollout gets it', async () => {
    const since = Date.now();
    const id = await start({
      name: 'good model',
      model: { name: MODEL, version: '2.0.0' },
      stages: [
        { percent: 2, soakSeconds: 1 },
        { percent: 10, soakSeconds: 1 },
        { percent: 50, soakSeconds: 3 },
        { percent: 100, soakSeconds: 3 },
      ],
    });

    // At 50 % (paused meanwhile, so no device joins), three devices the rollout does not hold lose power;
    // the last stage takes them in while they are away.
    await waitUntil(async () => (await detail(id)).stage.index >= 2, 'stage 3');
    expect((await call<{ state: string; stage: { index: number } }>('POST', `/rollouts/${id}/pause`, { reason: 'power cut in the park' })).stage.index).toBe(2);
    const held = new Set((await members(id)).map((m) => m.deviceId));
    const away = ids.filter((d) => !held.has(d)).slice(0, 3);
    await fleet.cut(away);
    await waitUntil(() => away.every((d) => cp.services.devices.get(d)?.status === 'offline'), 'the three to be offline');
    expect((await call<{ state: string }>('POST', `/rollouts/${id}/resume`)).state).toBe('running');

    // At 100 %, a new box joins the park.
    await waitUntil(async () => (await detail(id)).stage.index === 3, 'the last stage');
    fleet.add('park-new', (await cp.issueDeviceCredentials('park-new', { tags: ['park'] })).password);
    await fleet.connect(['park-new']);
    ids.push('park-new');

    const done = await settle(id, ['completed', 'paused', 'rolling-back', 'rolled-back']);
    expect(done.state, done.reason ?? '').toBe('completed');
    expect(done.events.map((e) => e.type)).toEqual(['created', 'stage-started', 'stage-passed', 'stage-passed', 'paused', 'resumed', 'stage-passed', 'completed']);
    // Every stage's gates were evaluated and passed (or had nothing to compare with), values stored.
    for (const s of done.stages) {
      expect(s.status).toBe('passed');
      const verdicts = Object.fromEntries(s.gates.map((g) => [g.gate, g.verdict]));
      for (const gate of ['deployment', 'min-devices', 'min-frames', 'error-rate', 'latency-p95-ratio', 'prediction-js']) expect(verdicts[gate], gate).toBe('pass');
    }
    const late = (await members(id)).find((m) => m.deviceId === 'park-new');
    expect(late).toMatchObject({ stage: 3, status: 'replaced' });
    await waitUntil(() => reportedSha('park-new') === sha['2.0.0'], 'the new box on 2.0.0');
    for (const d of ids.filter((x) => !away.includes(x))) expect(reportedSha(d), d).toBe(sha['2.0.0']);

    // The three come back and converge by themselves: their desired state waited for them.
    for (const d of away) expect(reportedSha(d)).toBe(sha['1.0.0']);
    await fleet.connect(away);
    await waitUntil(() => away.every((d) => reportedSha(d) === sha['2.0.0']), 'the returning devices on 2.0.0');
    expect(sentAsActive(sha['2.0.0']!, since)).toEqual([...ids].sort());

    // Webhooks heard every state change of it, in order.
    await waitUntil(() => hooked.filter((e) => e.rolloutId === id).length === done.events.length, 'a webhook delivery per event');
    expect(hooked.filter((e) => e.rolloutId === id).map((e) => e.type)).toEqual(done.events.map((e) => e.type));
  });

  for (const bad of [
    { version: '3.0.0-fails', what: 'fails to deploy', gate: 'deployment' },
    { version: '4.0.0-slow', what: 'is five times slower', gate: 'latency-p95-ratio' },
    { version: '5.0.0-garbage', what: 'predicts garbage', gate: 'prediction-js' },
  ]) {
    it(`stops a model that ${bad.what} at the first stage and rolls the canary back by itself`, async () => {
      const since = Date.now();
      const id = await start({ name: `bad: ${bad.what}`, model: { name: MODEL, version: bad.version }, stages: [{ percent: 10, soakSeconds: 30 }, { percent: 100, soakSeconds: 1 }] });
      const d = await settle(id, ['rolled-back', 'completed', 'paused']);
      expect(d.state).toBe('rolled-back');
      expect(d.events.map((e) => e.type)).toEqual(['created', 'stage-started', 'rolling-back', 'rolled-back']);
      expect(d.events.every((e) => e.stage === 0)).toBe(true);
      expect(d.reason).toContain(bad.gate);
      expect(d.stages[0]!.gates.find((g) => g.gate === bad.gate)?.verdict).toBe('fail');

      // Only the canary was ever sent the bad model, and it went back to 2.0.0 with a signed rollback.
      const canary = (await members(id)).map((m) => m.deviceId).sort();
      expect(canary.length).toBeGreaterThanOrEqual(5);
      expect(canary.length).toBeLessThan(15);
      expect(sentAsActive(sha[bad.version]!, since)).toEqual(canary);
      for (const c of canary) {
        const last = fleet.box(c).desired.at(-1)!;
        expect(last).toMatchObject({ active: sha['2.0.0'], rollback: true });
        expect(reportedSha(c), c).toBe(sha['2.0.0']);
      }

      if (bad.version !== '3.0.0-fails') {
        // From the canary's first window of the bad model to every canary device back on its previous one.
        const firstBad = Math.min(...canary.map((c) => fleet.box(c).firstWindowAt.get(sha[bad.version]!) ?? Number.POSITIVE_INFINITY));
        const back = Math.max(...canary.map((c) => fleet.box(c).switches.filter((s) => s.from === sha[bad.version]).at(-1)?.at ?? Number.NaN));
        expect(Number.isFinite(firstBad) && Number.isFinite(back)).toBe(true);
        console.log(`[rollout] ${bad.version} (${bad.what}): first bad window -> all ${canary.length} canary devices back on 2.0.0: ${back - firstBad} ms (engine tick 250 ms, windows every ${WINDOW_MS} ms, minFrames 200)`);
      }
    });
  }

  it('runs an identical challenger in shadow, passes it on its agreement and then replaces the champion with it', async () => {
    const since = Date.now();
    const id = await start({
      name: 'twin in shadow first',
      model: { name: MODEL, version: '6.0.0-twin' },
      mode: 'shadow-then-replace',
      shadow: { sampleRate: 0.25, soakSeconds: 1 },
      stages: [{ percent: 10, soakSeconds: 1 }, { percent: 100, soakSeconds: 1 }],
    });
    const d = await settle(id, ['completed', 'rolled-back', 'paused']);
    expect(d.state, d.reason ?? '').toBe('completed');
    const agreement = d.stages[0]!.history.filter((g) => g.gate === 'shadow-agreement' && g.verdict === 'pass');
    expect(agreement.length).toBeGreaterThan(0);
    expect(agreement.at(-1)!.value).toBeGreaterThanOrEqual(0.99);
    console.log(`[rollout] shadow agreement, identical challenger: ${agreement.at(-1)!.value}`);
    // Each device first ran it beside 2.0.0, then instead of it.
    for (const dev of ids) {
      const seen = fleet.box(dev).desired.filter((x) => x.at >= since);
      expect(seen[0], dev).toMatchObject({ active: sha['2.0.0'], shadow: sha['6.0.0-twin'] });
      expect(seen.at(-1), dev).toMatchObject({ active: sha['6.0.0-twin'], shadow: null });
    }
    await waitUntil(() => ids.every((x) => reportedSha(x) === sha['6.0.0-twin']), 'every device on the twin');
  });

  it('stops a garbage challenger in shadow before any device runs it', async () => {
    const since = Date.now();
    const id = await start({
      name: 'garbage in shadow',
      model: { name: MODEL, version: '5.0.0-garbage' },
      mode: 'shadow-then-replace',
      shadow: { sampleRate: 0.25, soakSeconds: 30 },
      stages: [{ percent: 10, soakSeconds: 1 }, { percent: 100, soakSeconds: 1 }],
    });
    const d = await settle(id, ['rolled-back', 'completed', 'paused']);
    expect(d.state).toBe('rolled-back');
    expect(d.reason).toContain('shadow-agreement');
    const agreement = d.stages[0]!.gates.find((g) => g.gate === 'shadow-agreement')!;
    expect(agreement.verdict).toBe('fail');
    expect(agreement.value).toBeLessThan(0.5);
    console.log(`[rollout] shadow agreement, garbage challenger: ${agreement.value}`);
    const canary = (await members(id)).map((m) => m.deviceId);
    expect(sentAsActive(sha['5.0.0-garbage']!, since)).toEqual([]);
    for (const c of canary) expect(fleet.box(c).desired.at(-1)).toMatchObject({ active: sha['6.0.0-twin'], shadow: null });
  });

  it('continues where it was after the control plane restarts mid-rollout', async () => {
    const id = await start({ name: 'across a restart', model: { name: MODEL, version: '7.0.0' }, stages: [{ percent: 10, soakSeconds: 1 }, { percent: 50, soakSeconds: 4 }, { percent: 100, soakSeconds: 1 }] });
    await waitUntil(async () => (await detail(id)).stage.index === 1, 'stage 2');
    const before = await members(id);
    await cp.stop();
    cp = new ControlPlane(site.config, createLogger('warn'));
    await cp.start();
    api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
    const d = await settle(id, ['completed', 'rolled-back', 'paused']);
    expect(d.state, d.reason ?? '').toBe('completed');
    // One pass through each stage, nothing started over (an event names the stage the rollout is in after it).
    expect(d.events.map((e) => `${e.type}@${e.stage}`)).toEqual(['created@0', 'stage-started@0', 'stage-passed@1', 'stage-passed@2', 'completed@2']);
    const after = await members(id);
    // Devices assigned before the restart kept their stage.
    for (const m of before) expect(after.find((a) => a.deviceId === m.deviceId)?.stage).toBe(m.stage);
    await waitUntil(() => ids.every((x) => reportedSha(x) === sha['7.0.0']), 'every device on 7.0.0');
    // Each device was sent 7.0.0 once: the restart did not issue it again.
    for (const dev of ids) expect(fleet.box(dev).desired.filter((x) => x.active === sha['7.0.0']).length, dev).toBe(1);
  });

  it('never sent a rollout model to a device outside the target', () => {
    for (const id of outsiders) expect(fleet.box(id).desired.map((d) => d.active)).toEqual([sha['1.0.0']]);
  });
});
