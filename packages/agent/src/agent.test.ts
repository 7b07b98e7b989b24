import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { deviceTopic, generateSigningKey, modelRefOf, type ModelTarget, type TelemetryWindow } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from './agent.js';
import { resolveAgentConfig, type AgentConfig } from './config/agent-config.js';
import { ControlPlaneDouble } from './test-support/control-plane-double.js';
import { DeviceObserver } from './test-support/device-observer.js';
import { CapturedLog, tempDir, waitFor } from './test-support/harness.js';
import { startBroker, type TestBroker } from './test-support/mqtt-broker.js';
import { buildTinyModel, type TinyModel } from './test-support/tiny-model.js';
import { makeTestVideo } from './test-support/video-file.js';

const deviceId = 'gate-1';
const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const credentials = { [deviceId]: 'device-secret', 'control-plane-double': 'cp-secret', [`observer-${deviceId}`]: 'obs-secret' };

/**
 * The agent as a whole, against a real broker, real onnxruntime and real
 * ffmpeg, with the test playing the control plane. The steps build on each
 * other (one agent, one data folder), as a device's life does.
 */
describe('agent end to end', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let observer: DeviceObserver;
  let dir: { path: string; remove(): Promise<void> };
  let config: AgentConfig;
  let agent: Agent;
  let captured: CapturedLog;
  const stranger = generateSigningKey();
  const modelA = buildTinyModel({ kind: 'probabilities' });
  const modelB = buildTinyModel({ kind: 'logits', width: 16, height: 12, labels: ['cat', 'dog', 'empty'] });
  let targetA: ModelTarget;
  let targetB: ModelTarget;

  async function makeConfig(brokerUrl: string): Promise<AgentConfig> {
    return resolveAgentConfig(
      {
        deviceId,
        dataDir: 'data',
        broker: { url: brokerUrl, password: credentials[deviceId], reconnect: { minMs: 50, maxMs: 500 } },
        trust: { rootFile: cp.rootFile },
        ffmpegPath,
        telemetry: { windowSeconds: 0.5 },
        cameras: [
          { id: 'cam-a', fps: 10, source: { kind: 'synthetic' } },
          { id: 'cam-b', fps: 10, source: { kind: 'file', path: 'clip.mp4' } },
        ],
        download: { chunkBytes: 1024, requestTimeoutMs: 2000, maxRetries: 3 },
        // Short, so each step's model is known-good before the next; the window itself is tested in model-activation.test.ts.
        deployment: { healthWindowSeconds: 0.3 },
        log: { level: 'debug' },
      },
      dir.path,
    );
  }

  async function startAgent(cfg: AgentConfig): Promise<Agent> {
    captured = new CapturedLog('debug');
    const a = new Agent(cfg, captured.logger);
    await a.start();
    return a;
  }

  const reportedWith = (pred: (r: NonNullable<DeviceObserver['lastReported']>) => boolean) => () => {
    const r = observer.lastReported;
    return r && pred(r) ? r : undefined;
  };

  /** A telemetry window newer than any seen so far, for which `pred` holds. */
  async function nextWindow(pred: (w: TelemetryWindow) => boolean = () => true): Promise<TelemetryWindow> {
    const after = observer.telemetry.length;
    return waitFor('a new telemetry window', () => observer.telemetry.slice(after).find(pred));
  }

  const inferredOn = (w: TelemetryWindow, camera: string) => w.cameras.find((c) => c.cameraId === camera)?.framesInferred ?? 0;

  beforeAll(async () => {
    broker = await startBroker({ credentials });
    cp = new ControlPlaneDouble(broker.url, { username: 'control-plane-double', password: credentials['control-plane-double'] });
    await cp.start();
    observer = new DeviceObserver(broker.url, deviceId, { username: `observer-${deviceId}`, password: credentials[`observer-${deviceId}`] });
    await observer.start();
    dir = await tempDir();
    await makeTestVideo(ffmpegPath, join(dir.path, 'clip.mp4'), { seconds: 1, rate: 10 });
    cp.addArtifact(modelA.bytes);
    cp.addArtifact(modelB.bytes);
    targetA = cp.signTarget(modelA.bytes, modelA.metadata, { name: 'colours', version: '1' });
    targetB = cp.signTarget(modelB.bytes, modelB.metadata, { name: 'pets', version: '2' });
    config = await makeConfig(broker.url);
    agent = await startAgent(config);
  });

  afterAll(async () => {
    await agent?.stop();
    await observer?.stop();
    await cp?.stop();
    await broker?.close();
    await dir?.remove();
  });

  it('comes online with no model and says so', async () => {
    await waitFor('online status', () => observer.status.find((s) => s.state === 'online'));
    const r = await waitFor('idle reported state', reportedWith((r) => r.deployment.phase === 'idle'));
    expect(r).toMatchObject({ deviceId, acceptedGeneration: 0, active: null });
    expect(r.cameras.map((c) => c.state)).toEqual(['offline', 'offline']);
  });

  it('deploys a signed model: download, verify, install, run on both cameras, telemetry with seq', async () => {
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 1, targetA));
    const active = await waitFor('model A active', reportedWith((r) => r.deployment.phase === 'active' && r.acceptedGeneration === 1));
    expect(active.active).toEqual(modelRefOf(targetA));
    // Every phase in order, each once (progress restates downloading).
    const phases = observer.reported.filter((r) => r.deployment.generation === 1).map((r) => r.deployment.phase).filter((p, i, all) => p !== all[i - 1]);
    expect(phases).toEqual(['queued', 'downloading', 'verifying', 'ready', 'activating', 'health-check', 'active']);
    expect(observer.reported.find((r) => r.deployment.phase === 'downloading')?.deployment.progress?.total).toBe(modelA.bytes.length);
    expect(cp.requests.length).toBe(Math.ceil(modelA.bytes.length / 1024));

    const w = await nextWindow((w) => inferredOn(w, 'cam-a') > 0 && inferredOn(w, 'cam-b') > 0);
    expect(w.model).toEqual(modelRefOf(targetA));
    const cam = w.cameras.find((c) => c.cameraId === 'cam-a');
    expect(Object.keys(cam?.classCounts ?? {}).every((l) => modelA.metadata.labels.includes(l))).toBe(true);
    expect(cam?.latencyMs.counts.reduce((a, b) => a + b, 0)).toBe(cam?.framesInferred);
    const seqs = observer.telemetry.map((t) => t.seq);
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
    await waitFor('cameras reported online', reportedWith((r) => r.cameras.every((c) => c.state === 'online')));
    expect(captured.messages().some((m) => /^camera cam-a: \d+ inferred, (red|green|blue) \d+/.test(m))).toBe(true);
    const sha = targetA.hashes.sha256;
    expect(await readdir(join(config.dataDir, 'models'))).toEqual(expect.arrayContaining([`${sha}.onnx`, `${sha}.target.json`]));
    expect(observer.invalid).toEqual([]);
  });

  it('logs and drops malformed and schema-invalid payloads on its topics, and keeps working', async () => {
    const before = captured.lines.length;
    await cp.publishRaw(deviceTopic(deviceId, 'desired'), '{not json');
    await cp.publishRaw(deviceTopic(deviceId, 'desired'), JSON.stringify({ signed: { _type: 'desired-state', generation: 'two' }, signatures: [] }));
    await cp.publishRaw(deviceTopic(deviceId, 'artifact/chunk'), Buffer.from('PCH1\u0000\u0000\u0000\u0002{}'));
    const drops = await waitFor('three drops logged', () => {
      const d = captured.lines.slice(before).filter((l) => l.msg === 'invalid payload; dropped');
      return d.length >= 3 ? d : undefined;
    });
    expect(String(drops[0]?.reason)).toMatch(/^malformed JSON/);
    expect(String(drops[1]?.reason)).toMatch(/signed\.generation/);
    expect(String(drops[2]?.reason)).toMatch(/^chunk frame header/);
    await nextWindow((w) => inferredOn(w, 'cam-a') > 0);
    expect(observer.lastReported?.deployment.phase).toBe('active');
  });

  it('refuses a desired state signed by an unknown key, and keeps running', async () => {
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 2, targetB, { key: stranger }));
    const r = await waitFor('rejected', reportedWith((r) => r.deployment.phase === 'rejected' && r.deployment.generation === 2));
    expect(r.deployment.reason).toMatch(/signature check failed: 0 of 1 required trusted signatures, 1 by unknown keys/);
    expect(r.acceptedGeneration).toBe(1);
    expect(r.active).toEqual(modelRefOf(targetA));
    const w = await nextWindow((w) => inferredOn(w, 'cam-a') > 0);
    expect(w.model).toEqual(modelRefOf(targetA));
  });

  it('refuses an artifact with one tampered byte, keeps the previous model and says why', async () => {
    const shaB = targetB.hashes.sha256;
    cp.tamper = (req, honest) => {
      if (req.sha256 !== shaB || req.offset !== 0 || 'error' in honest.header) return honest;
      const data = Buffer.from(honest.data);
      data[7] = (data[7] ?? 0) ^ 0x01;
      // The chunk hash is recomputed, as a compromised server would: only the signed hash can catch it.
      return { header: { ...honest.header, chunkSha256: createHash('sha256').update(data).digest('hex') }, data };
    };
    try {
      await cp.publishDesired(deviceId, cp.desiredState(deviceId, 3, targetB));
      const r = await waitFor('rejected', reportedWith((r) => r.deployment.phase === 'rejected' && r.deployment.generation === 3));
      expect(r.deployment.reason).toMatch(new RegExp(`does not match the signed sha256 ${shaB}`));
      expect(r.deployment.target).toEqual(modelRefOf(targetB));
      expect(r.acceptedGeneration).toBe(1);
      expect(r.active).toEqual(modelRefOf(targetA));
    } finally {
      cp.tamper = null;
    }
    expect((await readdir(join(config.dataDir, 'models'))).some((f) => f.startsWith(targetB.hashes.sha256))).toBe(false);
    expect(await readdir(join(config.dataDir, 'downloads'))).toEqual([]);
    const w = await nextWindow((w) => inferredOn(w, 'cam-a') > 0);
    expect(w.model).toEqual(modelRefOf(targetA));
  });

  it('switches to a new model with another input size; cameras follow', async () => {
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 4, targetB));
    const r = await waitFor('model B active', reportedWith((r) => r.deployment.phase === 'active' && r.acceptedGeneration === 4));
    expect(r.active).toEqual(modelRefOf(targetB));
    const w = await nextWindow((w) => w.model?.name === 'pets' && inferredOn(w, 'cam-a') > 0 && inferredOn(w, 'cam-b') > 0);
    expect(Object.keys(w.cameras[0]?.classCounts ?? {}).every((l) => ['cat', 'dog', 'empty'].includes(l))).toBe(true);
  });

  it('refuses an older generation (replay)', async () => {
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 2, targetA));
    const r = await waitFor('rejected', reportedWith((r) => r.deployment.phase === 'rejected' && r.deployment.generation === 2));
    expect(r.deployment.reason).toBe('replay: desired state generation 2 is older than the accepted generation 4');
    expect(r.active).toEqual(modelRefOf(targetB));
  });

  it('a newer desired state arriving mid-download supersedes the old one', async () => {
    const modelC = buildTinyModel({ gain: 8 });
    const shaC = cp.addArtifact(modelC.bytes);
    const targetC = cp.signTarget(modelC.bytes, modelC.metadata, { name: 'colours', version: '3' });
    // The control plane never answers for C: its download hangs until something newer comes.
    cp.tamper = (req, honest) => (req.sha256 === shaC ? null : honest);
    try {
      await cp.publishDesired(deviceId, cp.desiredState(deviceId, 5, targetC));
      await waitFor('downloading C', reportedWith((r) => r.deployment.phase === 'downloading' && r.deployment.generation === 5));
      await cp.publishDesired(deviceId, cp.desiredState(deviceId, 6, targetA));
      const r = await waitFor('A active again', reportedWith((r) => r.deployment.phase === 'active' && r.acceptedGeneration === 6));
      expect(r.active).toEqual(modelRefOf(targetA));
      expect(agent.deployment.state).toEqual({ acceptedGeneration: 6, active: modelRefOf(targetA) });
      // The abandoned download leaves nothing behind: its part file goes in the prune after the activation is reported.
      await waitFor('the abandoned part file pruned', async () => (await readdir(join(config.dataDir, 'downloads'))).length === 0);
    } finally {
      cp.tamper = null;
    }
  });

  it('refuses a signed model that fails to load, and the running one carries on', async () => {
    const broken = Buffer.from('this is not an onnx model, though it is signed');
    cp.addArtifact(broken);
    const target = cp.signTarget(broken, modelA.metadata, { name: 'broken', version: '1' });
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 7, target));
    const r = await waitFor('rejected', reportedWith((r) => r.deployment.phase === 'rejected' && r.deployment.generation === 7));
    expect(r.deployment.reason).toMatch(/^model failed to load/);
    expect(r.acceptedGeneration).toBe(6);
    expect(r.active).toEqual(modelRefOf(targetA));
    const w = await nextWindow((w) => inferredOn(w, 'cam-a') > 0);
    expect(w.model).toEqual(modelRefOf(targetA));
  });

  it('after a restart with no control plane, runs its last good model and keeps its telemetry sequence', async () => {
    await agent.stop();
    // Published after the last window, so by now the observer has seen every seq the agent used.
    await waitFor('offline (shutdown) status', () => observer.status.find((s) => s.state === 'offline' && s.reason === 'shutdown'));
    const lastSeq = Math.max(...observer.telemetry.map((t) => t.seq));
    // A port where nothing listens.
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const deadPort = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    agent = await startAgent(await makeConfig(`mqtt://127.0.0.1:${deadPort}`));
    expect(agent.deployment.state).toEqual({ acceptedGeneration: 6, active: modelRefOf(targetA) });
    const first = await waitFor('a window summary in the log', () => captured.find((l) => typeof l.msg === 'string' && l.msg.startsWith('camera cam-a:')));
    expect(first.seq).toBe(lastSeq + 1);
    const summary = await waitFor('inference in the log', () => captured.find((l) => typeof l.msg === 'string' && /^camera cam-a: [1-9]\d* inferred, (red|green|blue) /.test(l.msg)));
    expect(summary.model).toBe('colours@1');
    expect(captured.find((l) => l.msg === 'mqtt connection error')).toBeDefined();
    await agent.stop();
  });

  it('back online, re-checks the retained desired state; `active: null` then stops inference', async () => {
    const seen = observer.reported.length;
    agent = await startAgent(config);
    // The retained desired state is still generation 7 (the model that does not load): tried again, refused again.
    const r = await waitFor('generation 7 refused again', () => observer.reported.slice(seen).find((r) => r.deployment.phase === 'rejected' && r.deployment.generation === 7));
    expect(r).toMatchObject({ acceptedGeneration: 6, active: modelRefOf(targetA) });
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 8, null));
    const idle = await waitFor('idle', reportedWith((r) => r.deployment.phase === 'idle' && r.acceptedGeneration === 8));
    expect(idle.active).toBeNull();
    expect(agent.pipeline.activeModel).toBeNull();
    expect(idle.cameras.every((c) => c.state === 'offline')).toBe(true);
    expect(observer.invalid).toEqual([]);
  });
});
