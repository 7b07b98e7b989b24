import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { generateSigningKey, modelRefOf, type ReportedState, type ModelTarget } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent.js';
import { resolveAgentConfig, type AgentConfig } from '../config/agent-config.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { DeviceObserver } from '../test-support/device-observer.js';
import { goldenOf } from '../test-support/golden.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { buildTinyModel, type TinyModel } from '../test-support/tiny-model.js';
import { makeTestVideo } from '../test-support/video-file.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const DEVICE = 'gate-h';
const FIRST = 'gate-n';
const credentials: Record<string, string> = { [DEVICE]: 'd1', [FIRST]: 'd2', 'control-plane-double': 'cp', [`observer-${DEVICE}`]: 'obs' };

/**
 * Switching models on a real agent (real broker, onnxruntime, ffmpeg and
 * files): the golden input before the switch, the health window after it,
 * the roll-back to the known-good model, and the pointer on disk across a
 * restart inside a window. The camera shows a black clip: the models built
 * with `darkFails` answer their golden input but give NaN on every camera
 * frame, so they fail their health window for real.
 */
describe('model activation: golden input, health window, roll-back', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let observer: DeviceObserver;
  let dir: { path: string; remove(): Promise<void> };
  let agent: Agent | null = null;
  let captured: CapturedLog;
  const models: Record<'a' | 'b' | 'c' | 'd' | 'e', TinyModel> = {
    a: buildTinyModel({ gain: 4 }),
    b: buildTinyModel({ gain: 5, kind: 'logits' }),
    c: buildTinyModel({ gain: 6 }),
    d: buildTinyModel({ gain: 7, darkFails: true }),
    e: buildTinyModel({ gain: 8 }),
  };
  const targets = {} as Record<keyof typeof models, ModelTarget>;

  async function config(deviceId: string, healthWindowSeconds: number): Promise<AgentConfig> {
    return resolveAgentConfig(
      {
        deviceId,
        dataDir: deviceId,
        broker: { url: broker.url, password: credentials[deviceId], reconnect: { minMs: 50, maxMs: 500 } },
        trust: { rootFile: cp.rootFile },
        ffmpegPath,
        telemetry: { windowSeconds: 0.5 },
        cameras: [{ id: 'cam', fps: 10, source: { kind: 'file', path: 'black.mp4' } }],
        download: { chunkBytes: 1024 },
        // Latency is judged in health-verdict.test.ts: a loaded test machine must not fail these windows.
        deployment: { healthWindowSeconds, minFrames: 5, latencyFloorMs: 2000 },
        events: { enabled: false },
        http: { enabled: false },
        log: { level: 'debug' },
      },
      dir.path,
    );
  }

  async function startAgent(deviceId: string, healthWindowSeconds: number): Promise<Agent> {
    captured = new CapturedLog('debug');
    agent = new Agent(await config(deviceId, healthWindowSeconds), captured.logger);
    await agent.start();
    return agent;
  }

  const pointer = (deviceId: string) => JSON.parse(readFileSync(join(dir.path, deviceId, 'active.json'), 'utf8')) as Record<string, unknown>;
  const sha = (k: keyof typeof models) => targets[k].hashes.sha256;
  const ref = (k: keyof typeof models) => modelRefOf(targets[k]);

  /** The phases reported for a generation, each run of repeats once. */
  const phasesOf = (generation: number, from = 0) =>
    observer.reported
      .slice(from)
      .filter((r) => r.deployment.generation === generation)
      .map((r) => r.deployment.phase)
      .filter((p, i, all) => p !== all[i - 1]);

  const reported = (pred: (r: ReportedState) => boolean, from = 0) => () => observer.reported.slice(from).find(pred);

  /** A telemetry window after now in which `k` inferred frames. */
  async function inferring(k: keyof typeof models): Promise<void> {
    const after = observer.telemetry.length;
    await waitFor(`frames inferred on ${k}`, () => observer.telemetry.slice(after).find((w) => w.model?.sha256 === sha(k) && (w.cameras[0]?.framesInferred ?? 0) > 0));
  }

  beforeAll(async () => {
    broker = await startBroker({ credentials });
    cp = new ControlPlaneDouble(broker.url, { username: 'control-plane-double', password: credentials['control-plane-double'] ?? '' });
    await cp.start();
    observer = new DeviceObserver(broker.url, DEVICE, { username: `observer-${DEVICE}`, password: credentials[`observer-${DEVICE}`] ?? '' });
    await observer.start();
    dir = await tempDir();
    await makeTestVideo(ffmpegPath, join(dir.path, 'black.mp4'), { pattern: 'color=c=black', seconds: 1, rate: 10 });
    for (const [k, m] of Object.entries(models) as [keyof typeof models, TinyModel][]) {
      cp.addArtifact(m.bytes);
      // b is a target registered before golden inputs; c's golden output was measured on another model.
      const golden = k === 'b' ? undefined : await goldenOf(k === 'c' ? models.e.bytes : m.bytes, m.metadata, 11);
      targets[k] = cp.signTarget(m.bytes, m.metadata, { name: 'colours', version: k, ...(golden ? { golden } : {}) });
    }
  });

  afterAll(async () => {
    await agent?.stop();
    await observer?.stop();
    await cp?.stop();
    await broker?.close();
    await dir?.remove();
  });

  it('a model passes its golden input and its health window, and becomes the known-good model', async () => {
    await startAgent(DEVICE, 1);
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 1, targets.a));
    const r = await waitFor('a active', reported((r) => r.deployment.generation === 1 && r.deployment.phase === 'active'));
    expect(r.active).toEqual(ref('a'));
    expect(phasesOf(1)).toEqual(['queued', 'downloading', 'verifying', 'ready', 'activating', 'health-check', 'active']);
    expect(captured.find((l) => l.msg === 'golden input matches')).toMatchObject({ maxDiff: expect.any(Number) });
    expect(captured.find((l) => l.msg === 'health window passed')).toMatchObject({ generation: 1 });
    expect(pointer(DEVICE)).toEqual({ acceptedGeneration: 1, active: sha('a'), knownGood: sha('a') });
    await inferring('a');
    const metrics = await agent!.metrics.text();
    expect(metrics).toContain('perch_agent_health_windows_total{outcome="passed"} 1');
    expect(metrics).toContain('perch_agent_deployment_phase{phase="active"} 1');
    expect(metrics).toContain('perch_agent_deployment_phase{phase="health-check"} 0');
    expect(metrics).toContain('perch_agent_deployment_transitions_total{phase="downloading"} 1');
    expect(metrics).toContain('perch_agent_deployment_generation 1');
  });

  it('a target registered before golden inputs activates, and the log says it was not checked', async () => {
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 2, targets.b));
    await waitFor('b active', reported((r) => r.deployment.generation === 2 && r.deployment.phase === 'active'));
    expect(captured.find((l) => l.msg === 'the target has no golden input (registered before golden inputs); activating without the output check')).toMatchObject({
      model: ref('b'),
    });
    expect(pointer(DEVICE)).toEqual({ acceptedGeneration: 2, active: sha('b'), knownGood: sha('b') });
    await inferring('b');
  });

  it('a model whose golden output differs is rejected before the switch, with the difference; the old model runs on', async () => {
    const from = observer.reported.length;
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 3, targets.c));
    const r = await waitFor('c rejected', reported((r) => r.deployment.generation === 3 && r.deployment.phase === 'rejected', from));
    expect(r.deployment.reason).toMatch(/^golden input: max difference \d\.\d+(e-\d+)? \(class \d/);
    expect(r.deployment.target).toEqual(ref('c'));
    expect(phasesOf(3, from)).toEqual(['queued', 'downloading', 'verifying', 'ready', 'activating', 'rejected']);
    expect(r).toMatchObject({ acceptedGeneration: 2, active: ref('b') });
    expect(agent?.pipeline.activeModel?.target.hashes.sha256).toBe(sha('b'));
    expect(pointer(DEVICE)).toEqual({ acceptedGeneration: 2, active: sha('b'), knownGood: sha('b') });
    await inferring('b');
  });

  it('a model failing its health window is rolled back to the known-good one, and that generation is not tried again', async () => {
    const from = observer.reported.length;
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 4, targets.d));
    const r = await waitFor('d rolled back', reported((r) => r.deployment.generation === 4 && r.deployment.phase === 'rolled-back', from));
    expect(phasesOf(4, from)).toEqual(['queued', 'downloading', 'verifying', 'ready', 'activating', 'health-check', 'rolled-back']);
    expect(r.deployment.reason).toMatch(/^health window: \d+ of \d+ frames failed \(100\.0%, the limit is 5\.0%\); last error: .*not a finite number/);
    expect(r.deployment.target).toEqual(ref('d'));
    expect(r).toMatchObject({ acceptedGeneration: 4, active: ref('b') });
    expect(agent?.pipeline.activeModel?.target.hashes.sha256).toBe(sha('b'));
    expect(pointer(DEVICE)).toMatchObject({ acceptedGeneration: 4, active: sha('b'), knownGood: sha('b'), rolledBack: { generation: 4, target: ref('d') } });
    expect(pointer(DEVICE).trial).toBeUndefined();
    await inferring('b');
    const metrics = await agent!.metrics.text();
    expect(metrics).toContain('perch_agent_health_windows_total{outcome="failed"} 1');
    expect(metrics).toContain('perch_agent_deployment_phase{phase="rolled-back"} 1');
    expect(metrics).toContain('perch_agent_deployment_transitions_total{phase="rolled-back"} 1');

    // The same document again (as after a reconnect): restated, not fetched, loaded or watched again.
    const again = observer.reported.length;
    const lines = captured.lines.length;
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 4, targets.d));
    await waitFor('not tried again', () => captured.lines.slice(lines).find((l) => l.msg === 'desired state was rolled back; not tried again'));
    await waitFor('rolled-back restated', reported((r) => r.deployment.generation === 4 && r.deployment.phase === 'rolled-back', again));
    expect(phasesOf(4, again)).toEqual(['rolled-back']);
  });

  it('restarted inside a health window: back on the known-good model, that generation rolled back', async () => {
    await agent?.stop();
    // A window that cannot end before the agent stops.
    await startAgent(DEVICE, 600);
    // The roll-back of generation 4 survived the restart: the retained document is not tried again.
    await waitFor('rolled-back restated after the restart', () => captured.find((l) => l.msg === 'desired state was rolled back; not tried again'));
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 5, targets.e));
    await waitFor('e in its health window', reported((r) => r.deployment.generation === 5 && r.deployment.phase === 'health-check'));
    expect(agent?.pipeline.activeModel?.target.hashes.sha256).toBe(sha('e'));
    await agent?.stop();
    expect(pointer(DEVICE)).toMatchObject({ acceptedGeneration: 5, active: sha('e'), knownGood: sha('b'), trial: { generation: 5 } });

    const from = observer.reported.length;
    await startAgent(DEVICE, 1);
    expect(agent?.pipeline.activeModel?.target.hashes.sha256).toBe(sha('b'));
    const r = await waitFor('rolled back after the restart', reported((r) => r.deployment.generation === 5 && r.deployment.phase === 'rolled-back', from));
    expect(r.deployment.reason).toBe('the agent restarted during the health window of generation 5; back on the known-good model colours@b');
    expect(r).toMatchObject({ acceptedGeneration: 5, active: ref('b') });
    expect(r.deployment.target).toEqual(ref('e'));
    expect(pointer(DEVICE)).toMatchObject({ acceptedGeneration: 5, active: sha('b'), knownGood: sha('b'), rolledBack: { generation: 5, target: ref('e') } });
    expect(pointer(DEVICE).trial).toBeUndefined();
    await waitFor('not tried again', () => captured.find((l) => l.msg === 'desired state was rolled back; not tried again'));
    await inferring('b');
  });

  it("restarted inside the first model's health window (nothing known-good): the window starts again on it, never on no model", async () => {
    await agent?.stop();
    const current = () => agent?.reporter.current?.deployment;
    await startAgent(FIRST, 600);
    await cp.publishDesired(FIRST, cp.desiredState(FIRST, 1, targets.a));
    await waitFor('a in its health window', () => current()?.phase === 'health-check');
    await agent?.stop();
    expect(pointer(FIRST)).toMatchObject({ acceptedGeneration: 1, active: sha('a'), knownGood: null, trial: { generation: 1 } });

    await startAgent(FIRST, 1);
    expect(agent?.pipeline.activeModel?.target.hashes.sha256).toBe(sha('a'));
    expect(captured.find((l) => l.msg === 'restarted inside the health window and there is no known-good model to go back to: the window starts again on this model')).toBeDefined();
    await waitFor('a active', () => (current()?.phase === 'active' ? current() : undefined));
    expect(current()).toMatchObject({ generation: 1, target: ref('a') });
    expect(pointer(FIRST)).toEqual({ acceptedGeneration: 1, active: sha('a'), knownGood: sha('a') });
  });
});
