import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { decodeJson, detectionEventSchema, deviceTopic, generateSigningKey, modelRefOf, type DetectionEvent, type ModelTarget } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent.js';
import { allowedCpus } from '../camera/cpu-list.js';
import { resolveAgentConfig } from '../config/agent-config.js';
import { connectAsync, ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { parseMetrics, sampleValue } from '../test-support/prometheus-text.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { makeTestVideo } from '../test-support/video-file.js';

const deviceId = 'gate-http';
const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const metricsDoc = fileURLToPath(new URL('../../../../docs/agent-metrics.md', import.meta.url));

/**
 * The local endpoints of a real agent (in process) over real HTTP, with a
 * real broker, onnxruntime and ffmpeg; the test plays the control plane.
 */
describe('local HTTP endpoints', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let dir: { path: string; remove(): Promise<void> };
  let agent: Agent;
  let base: string;
  let listener: MqttClient;
  const events: DetectionEvent[] = [];
  const model = buildTinyModel({ width: 16, height: 12, gain: 8 });
  let target: ModelTarget;

  const get = (path: string) => fetch(`${base}${path}`);
  const metrics = async () => parseMetrics(await (await get('/metrics')).text());
  const inferred = async (camera: string) => sampleValue(await metrics(), 'perch_agent_frames_inferred_total', { camera }) ?? 0;

  beforeAll(async () => {
    broker = await startBroker();
    cp = new ControlPlaneDouble(broker.url);
    await cp.start();
    listener = await connectAsync(broker.url, 'events-listener');
    listener.on('message', (_topic, payload) => {
      const d = decodeJson(detectionEventSchema, payload);
      if (d.ok) events.push(d.value);
    });
    await listener.subscribeAsync(deviceTopic(deviceId, 'events'), { qos: 1 });
    dir = await tempDir();
    await makeTestVideo(ffmpegPath, join(dir.path, 'clip.mp4'), { seconds: 1, rate: 10 });
    cp.addArtifact(model.bytes);
    target = cp.signTarget(model.bytes, model.metadata, { name: 'colours', version: '3' });
    const config = await resolveAgentConfig(
      {
        deviceId,
        dataDir: 'data',
        broker: { url: broker.url, reconnect: { minMs: 50, maxMs: 500 } },
        trust: { rootFile: cp.rootFile },
        ffmpegPath,
        telemetry: { windowSeconds: 1 },
        cameras: [
          { id: 'cam-a', fps: 10, source: { kind: 'synthetic' } },
          { id: 'cam-b', fps: 10, source: { kind: 'file', path: 'clip.mp4' } },
        ],
        // Every frame counts, so events come at once; they end half a second after the cameras stop.
        events: { minConfidence: 0, debounceFrames: 2, disappearMs: 500 },
        http: { port: 0 },
      },
      dir.path,
    );
    agent = new Agent(config, new CapturedLog().logger);
    await agent.start();
    const address = agent.endpoints?.address;
    if (!address) throw new Error('the local endpoints did not start');
    base = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await agent?.stop();
    await listener?.endAsync();
    await cp?.stop();
    await broker?.close();
    await dir?.remove();
  });

  it('before a model: /healthz is 503 with the reasons, /snapshot 503 for a known camera and 404 for an unknown one', async () => {
    const health = await get('/healthz');
    expect(health.status).toBe(503);
    const body = (await health.json()) as { status: string; model: unknown; reasons: string[]; cameras: { id: string; ok: boolean }[] };
    expect(body.status).toBe('unavailable');
    expect(body.model).toBeNull();
    expect(body.reasons).toEqual(['model: no model active', expect.stringMatching(/^camera cam-a: no frame yet/), expect.stringMatching(/^camera cam-b: no frame yet/)]);
    expect(body.cameras.map((c) => [c.id, c.ok])).toEqual([
      ['cam-a', false],
      ['cam-b', false],
    ]);

    const none = await get('/snapshot/cam-a');
    expect(none.status).toBe(503);
    expect(await none.json()).toEqual({ error: { code: 'no_frame', message: 'camera cam-a has no inferred frame yet' } });
    expect((await get('/snapshot/cam-zz')).status).toBe(404);
    expect((await get('/snapshot/..%2Fetc')).status).toBe(404);
    expect((await get('/nothing-here')).status).toBe(404);

    const m = await metrics();
    expect(sampleValue(m, 'perch_agent_info', {})).toBe(1);
    expect(m.samples.some((s) => s.name === 'perch_agent_model_info')).toBe(false);
    expect(sampleValue(m, 'perch_agent_camera_up', { camera: 'cam-a' })).toBe(0);
    expect(sampleValue(m, 'perch_agent_camera_state', { camera: 'cam-a', state: 'offline' })).toBe(1);
  });

  it('with a model running: /healthz 200, frame counters that grow, histograms, model info and the latest frame as JPEG', async () => {
    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 1, target));
    const ok = await waitFor('/healthz 200', async () => {
      const r = await get('/healthz');
      return r.status === 200 ? ((await r.json()) as { status: string; model: unknown; reasons: string[] }) : undefined;
    }, 45_000);
    expect(ok).toMatchObject({ status: 'ok', model: modelRefOf(target), reasons: [] });

    const first = await inferred('cam-a');
    expect(first).toBeGreaterThan(0);
    await waitFor('more frames inferred on cam-a', async () => (await inferred('cam-a')) > first);
    await waitFor('frames inferred on cam-b', async () => (await inferred('cam-b')) > 0);

    const m = await metrics();
    const ref = modelRefOf(target);
    expect(sampleValue(m, 'perch_agent_model_info', { name: ref.name, version: ref.version, sha256: ref.sha256 })).toBe(1);
    expect(sampleValue(m, 'perch_agent_camera_up', { camera: 'cam-a' })).toBe(1);
    expect(sampleValue(m, 'perch_agent_frames_received_total', { camera: 'cam-a' })).toBeGreaterThanOrEqual(sampleValue(m, 'perch_agent_frames_inferred_total', { camera: 'cam-a' }) ?? 0);
    const latencyCount = sampleValue(m, 'perch_agent_inference_latency_seconds_count', { camera: 'cam-a' }) ?? 0;
    expect(latencyCount).toBeGreaterThan(0);
    expect(sampleValue(m, 'perch_agent_inference_latency_seconds_bucket', { camera: 'cam-a', le: '+Inf' })).toBe(latencyCount);
    expect(sampleValue(m, 'perch_agent_frame_age_seconds_count', { camera: 'cam-a' })).toBeGreaterThan(0);
    const predictions = m.samples.filter((s) => s.name === 'perch_agent_predictions_total' && s.labels.camera === 'cam-a');
    expect(predictions.length).toBeGreaterThan(0);
    expect(predictions.every((p) => model.metadata.labels.includes(p.labels.label ?? ''))).toBe(true);
    expect(sampleValue(m, 'perch_agent_outbox_pending', {})).toBeGreaterThanOrEqual(0);
    // decoderCpus 'auto': the decoders stay off the CPU left to inference where two or more are left to them.
    expect(sampleValue(m, 'perch_agent_decoders_confined', {})).toBe((allowedCpus()?.length ?? 1) >= 3 ? 1 : 0);
    expect(sampleValue(m, 'perch_agent_decoder_cpu_cores', {})).toBeGreaterThanOrEqual(0);
    expect(sampleValue(m, 'perch_agent_nodejs_eventloop_lag_p99_seconds', {})).toBeGreaterThanOrEqual(0);

    const snap = await get('/snapshot/cam-a');
    expect(snap.status).toBe(200);
    expect(snap.headers.get('content-type')).toBe('image/jpeg');
    expect(model.metadata.labels).toContain(snap.headers.get('x-perch-label'));
    const meta = await sharp(Buffer.from(await snap.arrayBuffer())).metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 16, height: 12 });
  });

  it('documents every metric it serves in docs/agent-metrics.md', async () => {
    const doc = await readFile(metricsDoc, 'utf8');
    const documented = new Set([...doc.matchAll(/`(perch_agent_[a-z0-9_]+)`/g)].map((x) => x[1]));
    // prom-client's default process and Node.js metrics are documented as two groups.
    const own = [...new Set((await metrics()).families.keys())].filter((n) => !/^perch_agent_(process|nodejs)_/.test(n));
    expect(own.length).toBeGreaterThan(10);
    expect(own.filter((n) => !documented.has(n))).toEqual([]);
  });

  it('publishes detection events with snapshots it serves, and ends them when the model goes', async () => {
    const created = await waitFor('a new event on cam-a', () => events.find((e) => e.kind === 'new' && e.cameraId === 'cam-a'));
    expect(created.snapshot).toMatch(/^cam-a-\d+-new\.jpg$/);
    const stored = await get(`/snapshots/${created.snapshot ?? ''}`);
    expect(stored.status).toBe(200);
    expect(await sharp(Buffer.from(await stored.arrayBuffer())).metadata()).toMatchObject({ format: 'jpeg', width: 16, height: 12 });
    expect((await get('/snapshots/nope.jpg')).status).toBe(404);
    const m = await metrics();
    expect(sampleValue(m, 'perch_agent_events_total', { camera: 'cam-a', kind: 'new' })).toBeGreaterThan(0);

    await cp.publishDesired(deviceId, cp.desiredState(deviceId, 2, null));
    const down = await waitFor('/healthz 503 without a model', async () => {
      const r = await get('/healthz');
      return r.status === 503 ? ((await r.json()) as { reasons: string[] }) : undefined;
    });
    expect(down.reasons).toContain('model: no model active');
    await waitFor('the event ended', () => events.find((e) => e.kind === 'end' && e.eventId === created.eventId));
    // One sequence for events, without gaps, in publish order.
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });
});
