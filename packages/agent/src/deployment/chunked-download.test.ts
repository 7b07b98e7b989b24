import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deviceTopic, encodeChunkFrame, generateSigningKey, type ChunkingParams } from '@perch/shared';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../mqtt/connection.js';
import { MessageDispatcher } from '../mqtt/dispatcher.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { ArtifactDownloader, DownloadError, type DownloadOptions, type DownloadRequest } from './artifact-downloader.js';
import { DownloadJournal } from './download-journal.js';

const deviceId = 'cdl-1';
/** Small chunks, so a test artifact of a few hundred KB has dozens of them. */
const PARAMS: ChunkingParams = { minBytes: 4096, avgBytes: 16_384, maxBytes: 65_536 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Seeded bytes (xorshift32), the same on every run. */
function seededBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let s = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

describe('chunked download along a signed manifest (real broker, control plane played by the test)', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let connection: MqttConnection;
  let dispatcher: MessageDispatcher;
  let dir: { path: string; remove(): Promise<void> };
  let downloader: ArtifactDownloader;
  const captured = new CapturedLog('debug');
  const artifact = seededBytes(600 * 1024 + 77, 11);
  let chunked: ReturnType<ControlPlaneDouble['addChunked']>;
  let part = 0;

  beforeAll(async () => {
    broker = await startBroker();
    cp = new ControlPlaneDouble(broker.url);
    await cp.start();
    chunked = cp.addChunked(artifact, PARAMS);
    connection = new MqttConnection(
      { deviceId, url: broker.url, username: deviceId, password: undefined, connectTimeoutMs: 5000, keepaliveSeconds: 30, reconnect: { minMs: 50, maxMs: 200 } },
      captured.logger,
    );
    dispatcher = new MessageDispatcher(connection, captured.logger);
    dir = await tempDir();
  });
  afterAll(async () => {
    await connection.stop();
    await cp.stop();
    await broker.close();
    await dir.remove();
  });
  beforeEach(() => {
    cp.tamper = null;
    cp.requests.length = 0;
  });
  afterEach(() => dispatcher.stop());

  async function setup(opts: Partial<DownloadOptions> = {}): Promise<void> {
    // Requests of up to the largest chunk: each manifest chunk in one request (the manifest itself in a few).
    downloader = new ArtifactDownloader(connection, { chunkBytes: PARAMS.maxBytes, window: 4, requestTimeoutMs: 2000, maxRetries: 2, ...opts }, captured.logger);
    dispatcher = new MessageDispatcher(connection, captured.logger);
    dispatcher.register(downloader.handler());
    dispatcher.start();
    connection.start();
    await waitFor('connected', () => connection.connected);
    await connection.subscribe(['artifact/chunk']);
  }

  function request(over: Partial<DownloadRequest> = {}): DownloadRequest {
    return {
      sha256: chunked.sha256,
      length: artifact.length,
      partPath: join(dir.path, `dl-${part++}.part`),
      signal: new AbortController().signal,
      chunkManifest: chunked.ref,
      ...over,
    };
  }

  const artifactRequests = () => cp.requests.filter((r) => r.sha256 === chunked.sha256);

  it('fetches the signed manifest first, then exactly the manifest\'s chunks', async () => {
    await setup();
    const req = request();
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(artifact));
    expect(cp.requests[0]?.sha256).toBe(chunked.ref.sha256);
    const boundaries = chunked.manifest.chunks.map((c) => `${c.offset}+${c.length}`).sort();
    expect(artifactRequests().map((r) => `${r.offset}+${r.length}`).sort()).toEqual(boundaries);
    expect(result).toMatchObject({ bytesFetched: artifact.length, bytesReused: 0, bytesDuplicated: 0, bytesResumed: 0, badChunks: 0 });
    expect(result.manifestBytes?.equals(chunked.manifestBytes)).toBe(true);
    expect(result.manifestBytesFetched).toBe(chunked.manifestBytes.length);
    const line = captured.lines.findLast((l) => l.msg === 'download complete');
    expect(line).toMatchObject({ fetched: artifact.length, reused: 0 });
  });

  it('checks each chunk against the signed manifest, not the hash the answer carries, and fetches a bad one again alone', async () => {
    await setup();
    const victim = chunked.manifest.chunks[3]!;
    let lied = 0;
    cp.tamper = (req, honest) => {
      if (req.sha256 !== chunked.sha256 || req.offset !== victim.offset || lied > 0) return honest;
      lied++;
      const data = Buffer.from(honest.data);
      data[10] = (data[10] ?? 0) ^ 0xff;
      // A control plane (or anything between) that lies consistently: the header's hash matches the bad bytes.
      return { header: { ...honest.header, chunkSha256: sha(data) } as typeof honest.header, data };
    };
    const req = request();
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(artifact));
    expect(artifactRequests().filter((r) => r.offset === victim.offset)).toHaveLength(2);
    expect(artifactRequests()).toHaveLength(chunked.manifest.chunks.length + 1);
    expect(result.badChunks).toBe(1);
  });

  it('asks for a chunk larger than chunkBytes in pieces within its bounds, and checks it whole', async () => {
    await setup({ chunkBytes: 4096 });
    const victim = chunked.manifest.chunks.find((c) => c.length > 3 * 4096)!;
    let lied = 0;
    cp.tamper = (req, honest) => {
      if (req.sha256 !== chunked.sha256 || req.offset !== victim.offset + 4096 || lied > 0) return honest;
      lied++;
      const data = Buffer.from(honest.data);
      data[0] = (data[0] ?? 0) ^ 0xff;
      return { header: { ...honest.header, chunkSha256: sha(data) } as typeof honest.header, data };
    };
    const req = request();
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(artifact));
    // No request crosses a chunk boundary or asks for more than chunkBytes.
    const bounds = chunked.manifest.chunks;
    for (const r of artifactRequests()) {
      expect(r.length).toBeLessThanOrEqual(4096);
      expect(bounds.some((c) => r.offset >= c.offset && r.offset + r.length <= c.offset + c.length)).toBe(true);
    }
    // The bad piece is only found once its chunk is whole: that chunk, all of it, is asked for again, and only it.
    const pieces = Math.ceil(victim.length / 4096);
    const expected = bounds.reduce((n, c) => n + Math.ceil(c.length / 4096), 0) + pieces;
    expect(artifactRequests()).toHaveLength(expected);
    expect(artifactRequests().filter((r) => r.offset >= victim.offset && r.offset < victim.offset + victim.length)).toHaveLength(2 * pieces);
    expect(result.badChunks).toBe(1);
  });

  it('refuses an artifact the control plane says is longer than signed', async () => {
    await setup();
    cp.tamper = (req, honest) => (req.sha256 === chunked.sha256 && 'total' in honest.header ? { header: { ...honest.header, total: artifact.length + 4096 }, data: honest.data } : honest);
    const err = (await downloader.download(request()).catch((e: unknown) => e)) as DownloadError;
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.outcome).toBe('rejected');
    expect(err.message).toMatch(/artifact is 618573 bytes, the signed length is 614477: more than signed/);
  });

  it('refuses a chunk longer than the manifest says', async () => {
    await setup();
    const victim = chunked.manifest.chunks[2]!;
    cp.tamper = (req, honest) => {
      if (req.sha256 !== chunked.sha256 || req.offset !== victim.offset || !('total' in honest.header)) return honest;
      const data = Buffer.concat([honest.data, Buffer.alloc(100)]);
      return { header: { ...honest.header, length: data.length, chunkSha256: sha(data) }, data };
    };
    const err = (await downloader.download(request()).catch((e: unknown) => e)) as DownloadError;
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.outcome).toBe('rejected');
    expect(err.message).toBe(`artifact chunk at offset ${victim.offset} is ${victim.length + 100} bytes, the signed chunk manifest says ${victim.length}: more than signed`);
  });

  it('refuses a manifest that is not the signed one, and one of another artifact', async () => {
    await setup();
    cp.tamper = (req, honest) => {
      if (req.sha256 !== chunked.ref.sha256 || !('total' in honest.header)) return honest;
      const data = Buffer.from(honest.data);
      data[data.length - 3] = 0x20;
      return { header: { ...honest.header, chunkSha256: sha(data) }, data };
    };
    const forged = (await downloader.download(request()).catch((e: unknown) => e)) as DownloadError;
    expect(forged.outcome).toBe('rejected');
    expect(forged.message).toMatch(/^chunk manifest sha256 [0-9a-f]{64} does not match the signed [0-9a-f]{64}$/);
    // Nothing of the artifact was asked for on the strength of a manifest that failed
    // (requests before the first manifest request are late ones of the test before).
    const firstManifestRequest = cp.requests.findIndex((r) => r.sha256 === chunked.ref.sha256);
    expect(cp.requests.slice(firstManifestRequest).filter((r) => r.sha256 === chunked.sha256)).toHaveLength(0);

    cp.tamper = null;
    const other = cp.addChunked(seededBytes(50_000, 5), PARAMS);
    const wrong = (await downloader.download(request({ chunkManifest: other.ref })).catch((e: unknown) => e)) as DownloadError;
    expect(wrong.outcome).toBe('rejected');
    expect(wrong.message).toMatch(/chunk manifest describes [0-9a-f]{64} \(50000 bytes\), not the signed/);
  });

  it('copies the chunks a model on the device already has and fetches only the rest', async () => {
    await setup();
    // The installed version: the same bytes but for a region in the middle (a changed layer).
    const installed = Buffer.from(artifact);
    for (let i = 300_000; i < 302_000; i++) installed[i] = (installed[i] ?? 0) ^ 0x33;
    const installedPath = join(dir.path, 'installed.onnx');
    await writeFile(installedPath, installed);
    const installedManifest = cp.addChunked(installed, PARAMS).manifest;
    const changed = chunked.manifest.chunks.filter((c) => !installedManifest.chunks.some((o) => o.sha256 === c.sha256));
    expect(changed.length).toBeGreaterThan(0);

    const req = request({ localSources: [{ path: installedPath, manifest: installedManifest }] });
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(artifact));
    expect(artifactRequests().map((r) => r.offset).sort((a, b) => a - b)).toEqual(changed.map((c) => c.offset));
    const changedBytes = changed.reduce((n, c) => n + c.length, 0);
    expect(result.bytesFetched).toBe(changedBytes);
    expect(result.bytesReused).toBe(artifact.length - changedBytes);
    expect(result.bytesFetched).toBeLessThan(artifact.length * 0.2);
    expect(captured.lines.findLast((l) => l.msg === 'download complete')).toMatchObject({ fetched: changedBytes, reused: artifact.length - changedBytes });
  });

  it('fetches a chunk whose local copy no longer matches', async () => {
    await setup();
    const installedPath = join(dir.path, 'rotten.onnx');
    const rotten = Buffer.from(artifact);
    const victim = chunked.manifest.chunks[5]!;
    rotten[victim.offset + 1] = (rotten[victim.offset + 1] ?? 0) ^ 1;
    await writeFile(installedPath, rotten);
    // The source's manifest still claims the old hash: the bytes are checked, not the claim.
    const req = request({ localSources: [{ path: installedPath, manifest: chunked.manifest }] });
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(artifact));
    expect(artifactRequests().map((r) => r.offset)).toEqual([victim.offset]);
    expect(result.bytesFetched).toBe(victim.length);
  });

  it('fetches a chunk repeated within the artifact once', async () => {
    await setup();
    const repeated = Buffer.concat([seededBytes(100_000, 3), Buffer.alloc(5 * PARAMS.maxBytes), seededBytes(100_000, 4)]);
    const c = cp.addChunked(repeated, PARAMS);
    const zeroChunks = c.manifest.chunks.filter((x) => x.sha256 === sha(Buffer.alloc(x.length)));
    expect(zeroChunks.length).toBeGreaterThanOrEqual(4);
    const req = request({ sha256: c.sha256, length: repeated.length, chunkManifest: c.ref });
    const result = await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(repeated));
    const asked = cp.requests.filter((r) => r.sha256 === c.sha256);
    expect(asked).toHaveLength(new Set(c.manifest.chunks.map((x) => x.sha256)).size);
    expect(result.bytesDuplicated).toBe(zeroChunks.slice(1).reduce((n, x) => n + x.length, 0));
    expect(result.bytesFetched + result.bytesDuplicated).toBe(repeated.length);
  });

  it('resumes along the manifest after a restart, fetching only the chunks it lacks', async () => {
    await setup({ window: 1 });
    const partPath = join(dir.path, 'resume.part');
    const total = chunked.manifest.chunks.length;
    const first = new AbortController();
    const cut = downloader.download({ ...request({ partPath, signal: first.signal }), onProgress: (b) => b >= artifact.length / 3 && first.abort(new Error('cut off')) });
    await expect(cut).rejects.toThrow('cut off');
    const lines = (await readFile(DownloadJournal.pathFor(partPath), 'utf8')).trim().split('\n');
    expect(JSON.parse(lines[0]!)).toEqual({ sha256: chunked.sha256, length: artifact.length, manifest: chunked.ref.sha256 });
    const doneOffsets = lines.slice(1).map((l) => Number(l.split(' ')[0]));
    expect(doneOffsets.length).toBeGreaterThan(0);
    expect(doneOffsets.length).toBeLessThan(total);

    cp.requests.length = 0;
    await setup();
    const result = await downloader.download(request({ partPath }));
    expect(sha(await readFile(partPath))).toBe(sha(artifact));
    const missing = chunked.manifest.chunks.filter((c) => !doneOffsets.includes(c.offset)).map((c) => c.offset);
    expect([...new Set(artifactRequests().map((r) => r.offset))].sort((a, b) => a - b)).toEqual(missing);
    expect(result.bytesResumed).toBe(chunked.manifest.chunks.filter((c) => doneOffsets.includes(c.offset)).reduce((n, c) => n + c.length, 0));
    expect(result.bytesResumed + result.bytesFetched).toBe(artifact.length);
  });

  it('does not ask again for a chunk still waiting while others of its download keep arriving (a paced control plane)', async () => {
    await setup({ window: 8, requestTimeoutMs: 400 });
    const small = seededBytes(300_000, 21);
    const c = cp.addChunked(small, PARAMS);
    // Answers go out one at a time, 100 ms apart: the eighth request of a window waits ~800 ms, twice the timeout.
    let nextAt = 0;
    cp.tamper = (req, honest) => {
      if (req.sha256 !== c.sha256) return honest;
      nextAt = Math.max(performance.now(), nextAt) + 100;
      setTimeout(() => void cp.publishRaw(deviceTopic(deviceId, 'artifact/chunk'), encodeChunkFrame(honest.header, honest.data)), nextAt - performance.now());
      return null;
    };
    const req = request({ sha256: c.sha256, length: small.length, chunkManifest: c.ref });
    await downloader.download(req);
    expect(sha(await readFile(req.partPath))).toBe(sha(small));
    const asked = cp.requests.filter((r) => r.sha256 === c.sha256).map((r) => r.offset);
    expect(asked.length).toBeGreaterThan(8);
    expect(asked).toHaveLength(new Set(asked).size);
  });
});
