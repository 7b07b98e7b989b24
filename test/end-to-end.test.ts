import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import {
  deviceTopic,
  emptyHistogram,
  LATENCY_SPEC,
  encodeJson,
  histogramCount,
  generateSigningKey,
  signEnvelope,
  type DesiredState,
  type ReportedState,
  type TelemetryWindow,
} from '@perch/shared';
import onnxProto from 'onnx-proto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess } from './support/agent-process.js';
import { bearer } from './support/api-auth.js';
import { demoAssets } from './support/demo-assets.js';
import { freshDeviceCredentials } from './support/device-credentials.js';
import { startTestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

const { onnx } = onnxProto;

/**
 * Perch end to end on one machine: a control plane with its embedded broker
 * and SQLite in a temp dir, two real agent processes on file cameras, the demo
 * model registered through the API, delivered over MQTT and run.
 */
let dir: string;
let cp: ControlPlane;
let api: string;
let adminToken: string;
let modelBytes: Buffer;
let metadata: Record<string, unknown>;
let v1Sha: string;
const agents: AgentProcess[] = [];

interface DeviceView {
  id: string;
  status: string;
  lastSeen: string | null;
  reported: ReportedState | null;
}

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(`${api}${path}`, { headers: bearer(adminToken) });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function register(version: string, bytes: Uint8Array): Promise<Response> {
  const form = new FormData();
  form.set('version', version);
  form.set('metadata', JSON.stringify(metadata));
  form.set('file', new Blob([bytes]), 'model.onnx');
  return fetch(`${api}/models/pet-park-classifier/versions`, { method: 'POST', body: form, headers: bearer(adminToken) });
}

async function setDesired(deviceId: string, version: string | null): Promise<number> {
  const res = await fetch(`${api}/devices/${deviceId}/desired-model`, {
    method: 'PUT',
    headers: bearer(adminToken, { 'content-type': 'application/json' }),
    body: JSON.stringify({ model: version ? { name: 'pet-park-classifier', version } : null }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { generation: number }).generation;
}

const device = (id: string) => getJson<DeviceView>(`/devices/${id}`);

/** The same network with a different producer string: same predictions, different bytes and sha256. */
function rebadged(bytes: Uint8Array, producerVersion: string): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  m.producerVersion = producerVersion;
  return onnx.ModelProto.encode(m).finish();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-e2e-'));
  const { model, video } = await demoAssets();
  modelBytes = readFileSync(model.modelPath);
  metadata = JSON.parse(readFileSync(model.metadataPath, 'utf8')) as Record<string, unknown>;

  const site = await startTestControlPlane(dir);
  cp = site.cp;
  api = site.api;
  adminToken = site.adminToken;
  const { rootFile, claimTokenFile } = site;
  for (const id of ['e2e-agent-1', 'e2e-agent-2']) {
    const configPath = AgentProcess.writeConfig(dir, {
      deviceId: id,
      dataDir: join(dir, id),
      // Each agent claims its own credentials with the site's claim token on its first start.
      broker: { url: `mqtt://127.0.0.1:${cp.mqttPort}`, claimTokenFile, reconnect: { minMs: 200, maxMs: 2000 } },
      trust: { rootFile },
      telemetry: { windowSeconds: 2 },
      deployment: { healthWindowSeconds: 2 },
      cameras: [{ id: 'park', fps: 5, source: { kind: 'file', path: video.outPath } }],
      log: { level: 'info' },
    });
    const agent = new AgentProcess(id, configPath);
    agent.start();
    agents.push(agent);
  }
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a model version from registry to camera and back', () => {
  it('registers the demo model through the API, content-addressed and signed', async () => {
    const res = await register('1.0.0', modelBytes);
    expect(res.status).toBe(201);
    const body = (await res.json()) as { sha256: string; length: number; target: { path: string; hashes: { sha256: string } } };
    expect(body.length).toBe(modelBytes.length);
    // Listed, with its hash, in the repository's targets metadata, which the targets role signs.
    const targets = JSON.parse(readFileSync(join(dir, 'cp', 'tuf', 'repository', 'targets.json'), 'utf8')) as { signed: { targets: Record<string, { hashes: { sha256: string } }> }; signatures: unknown[] };
    expect(targets.signed.targets[body.target.path]?.hashes.sha256).toBe(body.sha256);
    expect(targets.signatures).toHaveLength(1);
    v1Sha = body.sha256;
    expect(readFileSync(join(dir, 'cp', 'artifacts', 'sha256', v1Sha)).equals(modelBytes)).toBe(true);
  });

  it('both agents come online, download, verify and activate it', async () => {
    await waitUntil(async () => (await getJson<{ devices: DeviceView[] }>('/devices')).devices.filter((d) => d.status === 'online').length === 2, 'two agents online', 30_000);
    for (const a of agents) await setDesired(a.deviceId, '1.0.0');
    for (const a of agents) {
      const d = await waitUntil(async () => {
        const view = await device(a.deviceId);
        return view.reported?.deployment.phase === 'active' && view.reported.active?.sha256 === v1Sha ? view : null;
      }, `${a.deviceId} active on v1`, 60_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${a.tail()}`);
      });
      expect(d.reported?.active).toEqual({ name: 'pet-park-classifier', version: '1.0.0', sha256: v1Sha });
      expect(d.lastSeen).not.toBeNull();
    }
    expect(cp.stats.chunks.bytes).toBeGreaterThanOrEqual(2 * modelBytes.length);
  });

  it('telemetry windows with plausible class counts reach the database', async () => {
    const labels = metadata.labels as string[];
    for (const a of agents) {
      const windows = await waitUntil(() => {
        const w = cp.services.telemetry.recent(a.deviceId, 50).map((s) => s.window).filter((x) => x.model?.sha256 === v1Sha);
        const inferred = w.reduce((n, x) => n + (x.cameras[0]?.framesInferred ?? 0), 0);
        return inferred >= 40 ? w : null;
      }, `${a.deviceId} inferred 40 frames`, 60_000);
      const seqs = windows.map((w) => w.seq).sort((x, y) => x - y);
      expect(new Set(seqs).size).toBe(seqs.length);
      const totals: Record<string, number> = {};
      let inferred = 0;
      let received = 0;
      let agedFrames = 0;
      let timedFrames = 0;
      for (const w of windows as TelemetryWindow[]) {
        const cam = w.cameras.find((c) => c.cameraId === 'park');
        expect(cam).toBeDefined();
        if (!cam) continue;
        inferred += cam.framesInferred;
        const counted = Object.values(cam.classCounts).reduce((n, c) => n + c, 0);
        expect(counted).toBe(cam.framesInferred);
        received += cam.framesReceived;
        agedFrames += histogramCount(cam.frameAgeMs?.inference ?? emptyHistogram(LATENCY_SPEC));
        timedFrames += histogramCount(cam.frameAgeMs?.capture ?? emptyHistogram(LATENCY_SPEC));
        // The agent samples its own event loop in every window.
        expect(histogramCount(w.eventLoopLagMs ?? emptyHistogram(LATENCY_SPEC))).toBeGreaterThan(0);
        for (const [label, n] of Object.entries(cam.classCounts)) {
          expect(labels).toContain(label);
          totals[label] = (totals[label] ?? 0) + n;
        }
      }
      // A frame may be received in one window and inferred in the next, so compare totals.
      expect(received).toBeGreaterThanOrEqual(inferred);
      // Every inferred frame's age at inference is recorded (one may start in a window and finish in the next).
      expect(Math.abs(agedFrames - inferred)).toBeLessThanOrEqual(windows.length);
      // And every received frame's delay by the stream's clock (ffmpeg's timestamp line may land in the next window).
      expect(Math.abs(timedFrames - received)).toBeLessThanOrEqual(windows.length);
      // The clip shows each class a third of the time: no single class may take everything.
      const top = Math.max(...Object.values(totals));
      expect(top / inferred).toBeLessThan(0.9);
      expect(Object.keys(totals).length).toBeGreaterThanOrEqual(2);
    }
    const totals = await getJson<{ framesInferred: number; classCounts: Record<string, number> }>(`/devices/${agents[0]?.deviceId}/predictions?since=0`);
    expect(totals.framesInferred).toBeGreaterThan(0);
    // The agent says what it sees in its own log, too.
    expect(agents[0]?.find((l) => /inferred/.test(l.msg))).toBeDefined();
  });
});

describe('bad input at the system boundary', () => {
  it('refuses an artifact with one tampered byte and keeps the previous model', async () => {
    const a = agents[0];
    if (!a) throw new Error('no agent');
    const v2 = rebadged(modelBytes, 'tamper-test');
    const res = await register('1.0.1', v2);
    expect(res.status).toBe(201);
    const { sha256: v2Sha } = (await res.json()) as { sha256: string };
    // Flip one byte of the stored artifact after it was signed.
    const file = join(dir, 'cp', 'artifacts', 'sha256', v2Sha);
    const bytes = readFileSync(file);
    const at = Math.floor(bytes.length / 2);
    bytes.writeUInt8((bytes.readUInt8(at) ^ 0x01) & 0xff, at);
    writeFileSync(file, bytes);

    const before = (await device(a.deviceId)).reported?.acceptedGeneration ?? 0;
    const generation = await setDesired(a.deviceId, '1.0.1');
    const view = await waitUntil(async () => {
      const v = await device(a.deviceId);
      return v.reported?.deployment.generation === generation && v.reported.deployment.phase === 'rejected' ? v : null;
    }, 'tampered artifact rejected', 60_000);
    expect(view.reported?.deployment.reason).toMatch(/sha256/i);
    expect(view.reported?.active?.sha256).toBe(v1Sha);
    expect(view.reported?.acceptedGeneration).toBe(before);
    // Still running the old model: new windows keep coming with v1.
    const seqNow = cp.services.telemetry.recent(a.deviceId, 1)[0]?.seq ?? 0;
    await waitUntil(() => cp.services.telemetry.recent(a.deviceId, 1).some((w) => w.seq > seqNow && w.window.model?.sha256 === v1Sha), 'telemetry on v1 after the refusal', 30_000);
  });

  it('refuses a desired state signed by an unknown key', async () => {
    const a = agents[1];
    if (!a) throw new Error('no agent');
    const current = cp.services.desired.get(a.deviceId);
    if (!current) throw new Error('no desired state');
    const rogue = generateSigningKey();
    const forged: DesiredState = { ...current.envelope.signed, generation: current.generation + 10, version: current.generation + 10, active: null };
    await cp.services.bus.publish(deviceTopic(a.deviceId, 'desired'), encodeJson(signEnvelope(forged, [rogue])), { qos: 1, retain: true });
    const view = await waitUntil(async () => {
      const v = await device(a.deviceId);
      return v.reported?.deployment.phase === 'rejected' && v.reported.deployment.generation === forged.generation ? v : null;
    }, 'forged desired state rejected', 30_000);
    expect(view.reported?.deployment.reason).toMatch(/signature/i);
    expect(view.reported?.active?.sha256).toBe(v1Sha);
    expect(view.reported?.acceptedGeneration).toBe(current.generation);
    // The control plane's next genuine desired state is accepted again.
    await setDesired(a.deviceId, '1.0.0');
    await waitUntil(async () => (await device(a.deviceId)).reported?.deployment.phase === 'active', 'back to active', 30_000);
  });

  it('drops malformed and schema-invalid payloads on device topics and keeps serving', async () => {
    const a = agents[1];
    if (!a) throw new Error('no agent');
    // A device with valid credentials sending garbage on its own topics.
    const dev = mqtt.connect(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: 'e2e-noisy', ...(await freshDeviceCredentials(cp, 'e2e-noisy')), reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => {
      dev.once('connect', () => resolve());
      dev.once('error', reject);
    });
    const dropped = cp.stats.dispatch.dropped;
    await dev.publishAsync(deviceTopic('e2e-noisy', 'telemetry'), '{"seq": 1, ', { qos: 1 });
    await dev.publishAsync(deviceTopic('e2e-noisy', 'telemetry'), encodeJson({ deviceId: 'e2e-noisy', seq: 'one' }), { qos: 1 });
    await dev.publishAsync(deviceTopic('e2e-noisy', 'status'), encodeJson({ deviceId: 'e2e-noisy', state: 'sleeping', since: 0 }), { qos: 1 });
    await dev.publishAsync(deviceTopic('e2e-noisy', 'artifact/request'), encodeJson({ requestId: 'x', sha256: 'nope', offset: -1, length: 0 }), { qos: 1 });
    await dev.endAsync();
    await waitUntil(() => cp.stats.dispatch.dropped >= dropped + 4, 'four payloads dropped', 10_000);

    // Garbage on an agent's desired topic: the agent logs, drops and keeps running its model.
    await cp.services.bus.publish(deviceTopic(a.deviceId, 'desired'), Buffer.from('\u0000not json'), { qos: 1 });
    const seqNow = cp.services.telemetry.recent(a.deviceId, 1)[0]?.seq ?? 0;
    await waitUntil(() => cp.services.telemetry.recent(a.deviceId, 1).some((w) => w.seq > seqNow), 'telemetry after garbage', 30_000);
    expect(a.running).toBe(true);
    expect((await device(a.deviceId)).reported?.active?.sha256).toBe(v1Sha);
    expect((await fetch(`${api}/health`)).status).toBe(200);
  });

  it('refuses a corrupt ONNX upload with a clear 4xx and registers nothing', async () => {
    const corrupt = Buffer.from(modelBytes.subarray(0, Math.floor(modelBytes.length / 3)));
    const res = await register('9.9.9', corrupt);
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('invalid_model');
    expect(body.error.message).toMatch(/ONNX/);
    const versions = await getJson<{ versions: { version: string }[] }>('/models/pet-park-classifier/versions');
    expect(versions.versions.map((v) => v.version)).not.toContain('9.9.9');
  });
});
