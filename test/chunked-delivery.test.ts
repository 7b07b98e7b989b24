import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane, ControlPlaneConfigInput } from '@perch/control-plane';
import { chunkBytes, decodeChunkManifest, MAX_CHUNK_BYTES, type ChunkManifestRef } from '@perch/shared';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ArtifactDownloader, type DownloadResult } from '../packages/agent/src/deployment/artifact-downloader.js';
import { createLogger } from '../packages/agent/src/log/logger.js';
import { MqttConnection } from '../packages/agent/src/mqtt/connection.js';
import { MessageDispatcher } from '../packages/agent/src/mqtt/dispatcher.js';
import { bearer, type ApiAccess } from './support/api-auth.js';
import { buildBackboneModel, type BackboneModel } from './support/backbone-model.js';
import { chunkManifestRefFor, signedChunkManifestRef } from './support/chunk-manifest-ref.js';
import { freshDeviceCredentials } from './support/device-credentials.js';
import { registerModel } from './support/registry-api.js';
import { startTestControlPlane, type TestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * The control plane's side of chunked delivery, with the agent's real
 * downloader over the real embedded broker: manifests made at
 * registration and served like any artifact, the plain HTTP artifact
 * route, and bandwidth limits (lower bounds on time only).
 */
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;
/** ~3 MiB: 3072 inputs x 256 hidden floats. */
const model = buildBackboneModel({ side: 32, hidden: 256, seed: 7 });

interface Registered {
  sha256: string;
  length: number;
  chunkManifest: ChunkManifestRef;
}

const dirs: string[] = [];
const sites: TestControlPlane[] = [];
const connections: MqttConnection[] = [];

afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => c.stop()));
  await Promise.all(sites.splice(0).map((s) => s.cp.stop()));
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function site(overrides: ControlPlaneConfigInput = {}): Promise<TestControlPlane & { dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'perch-chunked-'));
  dirs.push(dir);
  const s = await startTestControlPlane(dir, overrides);
  sites.push(s);
  return { ...s, dir };
}

async function register(access: ApiAccess, version: string, m: BackboneModel): Promise<Registered> {
  const body = await registerModel(access, 'backbone', version, m.metadata, m.bytes);
  // The target the registry signed names the manifest of exactly these bytes.
  const ref = signedChunkManifestRef(body);
  expect(ref).toEqual(chunkManifestRefFor(m.bytes));
  if (!ref) throw new Error('no chunk manifest in the signed target');
  return { sha256: body.sha256, length: body.length, chunkManifest: ref };
}

/** A device: the agent's own connection, dispatcher and downloader. */
async function device(cp: ControlPlane, deviceId: string, requestTimeoutMs = 5000): Promise<ArtifactDownloader> {
  const log = createLogger('warn');
  const connection = new MqttConnection(
    { deviceId, url: `mqtt://127.0.0.1:${cp.mqttPort}`, ...(await freshDeviceCredentials(cp, deviceId)), connectTimeoutMs: 5000, keepaliveSeconds: 30, reconnect: { minMs: 100, maxMs: 500 } },
    log,
  );
  connections.push(connection);
  const downloader = new ArtifactDownloader(connection, { chunkBytes: MAX_CHUNK_BYTES, window: 8, requestTimeoutMs, maxRetries: 3 }, log);
  const dispatcher = new MessageDispatcher(connection, log);
  dispatcher.register(downloader.handler());
  dispatcher.start();
  connection.start();
  await waitUntil(() => connection.connected, `${deviceId} connected`, 10_000);
  await connection.subscribe(['artifact/chunk']);
  return downloader;
}

function download(downloader: ArtifactDownloader, dir: string, r: Registered, onProgress?: (bytes: number) => void): Promise<DownloadResult> {
  return downloader.download({
    sha256: r.sha256,
    length: r.length,
    partPath: join(dir, `${Math.random().toString(36).slice(2)}.part`),
    signal: new AbortController().signal,
    chunkManifest: r.chunkManifest,
    onProgress,
  });
}

describe('chunk manifests made by the registry', () => {
  it('signs a manifest of the stored file, served over MQTT and HTTP like the model itself', async () => {
    const s = await site();
    const r = await register(s, '1.0.0', model);
    expect(r.sha256).toBe(sha(model.bytes));
    // Over HTTP: the manifest is the signed bytes and describes the model exactly as the chunker cuts it.
    expect((await fetch(`${s.api}/artifacts/${r.chunkManifest.sha256}`)).status).toBe(401);
    const res = await fetch(`${s.api}/artifacts/${r.chunkManifest.sha256}`, { headers: bearer(s.adminToken) });
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(sha(bytes)).toBe(r.chunkManifest.sha256);
    expect(bytes.length).toBe(r.chunkManifest.length);
    const decoded = decodeChunkManifest(bytes);
    if (!decoded.ok) throw new Error(decoded.error);
    expect(decoded.value.sha256).toBe(r.sha256);
    expect(decoded.value.chunks).toEqual(chunkBytes(model.bytes, decoded.value.params));
    const file = await fetch(`${s.api}/artifacts/${r.sha256}`, { headers: bearer(s.adminToken) });
    expect(file.headers.get('content-length')).toBe(String(model.bytes.length));
    expect(sha(Buffer.from(await file.arrayBuffer()))).toBe(r.sha256);
    // Only registered artifacts; a malformed name is a 400 with the API's error shape.
    const missing = await fetch(`${s.api}/artifacts/${'ab'.repeat(32)}`, { headers: bearer(s.adminToken) });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
    expect((await fetch(`${s.api}/artifacts/nope`, { headers: bearer(s.adminToken) })).status).toBe(400);

    // Over MQTT: the agent's downloader takes the manifest first, then the manifest's chunks.
    const before = s.cp.stats.chunks.chunks;
    const result = await download(await device(s.cp, 'cd-plain'), s.dir, r);
    expect(result.bytesFetched).toBe(r.length);
    expect(result.manifestBytes?.equals(bytes)).toBe(true);
    expect(s.cp.stats.chunks.chunks - before).toBe(decoded.value.chunks.length + 1);
  });
});

describe('many devices at once', () => {
  it('each gets the model byte for byte, with no chunk failing its hash (frame buffers are reused only once written)', async () => {
    const s = await site();
    const r = await register(s, '1.0.0', model);
    const downloaders = await Promise.all(Array.from({ length: 6 }, (_, i) => device(s.cp, `cd-many-${i}`)));
    const parts: string[] = [];
    // Twice over, so the second round is served from buffers the first one gave back.
    for (let round = 0; round < 2; round++) {
      const results = await Promise.all(
        downloaders.map((d, i) => {
          const partPath = join(s.dir, `many-${round}-${i}.part`);
          parts.push(partPath);
          return d.download({ sha256: r.sha256, length: r.length, partPath, signal: new AbortController().signal, chunkManifest: r.chunkManifest });
        }),
      );
      expect(results.map((x) => x.badChunks)).toEqual(downloaders.map(() => 0));
    }
    for (const p of parts) expect(sha(readFileSync(p))).toBe(r.sha256);
  });
});

describe('bandwidth limits on the chunk server', () => {
  it('a device limited to R bytes/s takes at least (bytes - burst) / R, and no chunk is sent twice', async () => {
    const rate = 2 * MiB;
    const s = await site({ artifacts: { maxBytesPerSecondPerDevice: rate } });
    const r = await register(s, '1.0.0', model);
    // Eight chunks in flight at 2 MiB/s: the last of a window waits over a second, past this timeout.
    const downloader = await device(s.cp, 'cd-limited', 800);
    const served = s.cp.stats.chunks.bytes;
    const chunks = s.cp.stats.chunks.chunks;
    const started = performance.now();
    await download(downloader, s.dir, r);
    const elapsedMs = performance.now() - started;
    const bytes = s.cp.stats.chunks.bytes - served;
    expect(bytes).toBe(r.length + r.chunkManifest.length);
    // The bucket starts with a tenth of a second's worth; timers may fire up to ~1 ms early.
    const burst = rate * 0.1;
    expect(elapsedMs).toBeGreaterThanOrEqual(((bytes - burst) / rate) * 1000 - 2);
    // Paced, not lost: the timeout counts from the download's last answer, and the server answers a
    // request asked again while waiting once, so no chunk goes out twice.
    const manifestChunks = 1;
    const modelChunks = decodeManifestCount(s, r);
    expect(s.cp.stats.chunks.chunks - chunks).toBe(manifestChunks + (await modelChunks));
    expect(s.cp.stats.chunks.throttled).toBeGreaterThan(0);
  });

  it('two devices share the total: together no faster than the total rate, and both progress', async () => {
    const rate = 2 * MiB;
    const s = await site({ artifacts: { maxBytesPerSecondTotal: rate } });
    const r = await register(s, '1.0.0', model);
    const [a, b] = await Promise.all([device(s.cp, 'cd-share-a'), device(s.cp, 'cd-share-b')]);
    const progress = { a: 0, b: 0 };
    const served = s.cp.stats.chunks.bytes;
    const started = performance.now();
    let otherAtFirstFinish = -1;
    const finish = (other: 'a' | 'b') => () => {
      if (otherAtFirstFinish < 0) otherAtFirstFinish = progress[other] / r.length;
    };
    await Promise.all([
      download(a, s.dir, r, (bytes) => (progress.a = bytes)).then(finish('b')),
      download(b, s.dir, r, (bytes) => (progress.b = bytes)).then(finish('a')),
    ]);
    const elapsedMs = performance.now() - started;
    const bytes = s.cp.stats.chunks.bytes - served;
    expect(bytes).toBe(2 * (r.length + r.chunkManifest.length));
    expect(elapsedMs).toBeGreaterThanOrEqual(((bytes - rate * 0.1) / rate) * 1000 - 2);
    // Shared, not one after the other: when the first device was done, the other had most of its model too.
    expect(otherAtFirstFinish).toBeGreaterThan(0.5);
  });

  it('refuses limits that are not positive whole numbers, naming the key', async () => {
    const { loadControlPlaneConfig } = await import('@perch/control-plane');
    expect(() => loadControlPlaneConfig({ env: {}, overrides: { artifacts: { maxBytesPerSecondPerDevice: -5 } } })).toThrow(/artifacts\.maxBytesPerSecondPerDevice/);
    expect(() => loadControlPlaneConfig({ env: {}, overrides: { artifacts: { maxBytesPerSecondTotal: 1.5 } } })).toThrow(/artifacts\.maxBytesPerSecondTotal/);
    const defaults = loadControlPlaneConfig({ env: {} });
    expect(defaults.artifacts).toEqual({ maxBytesPerSecondPerDevice: null, maxBytesPerSecondTotal: null });
  });
});

/** Chunks in the registered model's manifest, read back over HTTP. */
async function decodeManifestCount(s: TestControlPlane, r: Registered): Promise<number> {
  const decoded = decodeChunkManifest(Buffer.from(await (await fetch(`${s.api}/artifacts/${r.chunkManifest.sha256}`, { headers: bearer(s.adminToken) })).arrayBuffer()));
  if (!decoded.ok) throw new Error(decoded.error);
  return decoded.value.chunks.length;
}
