import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deviceTopic, generateSigningKey } from '@perch/shared';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../mqtt/connection.js';
import { MessageDispatcher } from '../mqtt/dispatcher.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { ArtifactDownloader, DownloadError, type DownloadOptions } from './artifact-downloader.js';

const deviceId = 'dl-1';

describe('artifact downloader (real broker, control plane played by the test)', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let connection: MqttConnection;
  let dispatcher: MessageDispatcher;
  let dir: { path: string; remove(): Promise<void> };
  let downloader: ArtifactDownloader;
  const captured = new CapturedLog('debug');
  const artifact = randomBytes(10 * 1024 + 123);
  const sha = createHash('sha256').update(artifact).digest('hex');

  beforeAll(async () => {
    broker = await startBroker();
    cp = new ControlPlaneDouble(broker.url, generateSigningKey());
    await cp.start();
    cp.addArtifact(artifact);
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

  beforeEach(async () => {
    cp.tamper = null;
    cp.requests.length = 0;
  });
  afterEach(() => dispatcher.stop());

  async function setup(opts: Partial<DownloadOptions> = {}): Promise<void> {
    downloader = new ArtifactDownloader(connection, { chunkBytes: 1024, window: 4, requestTimeoutMs: 2000, maxRetries: 2, ...opts }, captured.logger);
    dispatcher = new MessageDispatcher(connection, captured.logger);
    dispatcher.register(downloader.handler());
    dispatcher.start();
    connection.start();
    await waitFor('connected', () => connection.connected);
    // The dispatcher subscribes in the background; this makes sure it is in place before the first request.
    await connection.subscribe(['artifact/chunk']);
  }

  function download(length = artifact.length, signal = new AbortController().signal, progress?: (b: number, t: number) => void) {
    const partPath = join(dir.path, `${randomBytes(4).toString('hex')}.part`);
    return { partPath, done: downloader.download({ sha256: sha, length, partPath, signal, onProgress: progress }) };
  }

  it('fetches every chunk, a window at a time, into the part file', async () => {
    await setup();
    const seen: number[] = [];
    const { partPath, done } = download(artifact.length, undefined, (b) => seen.push(b));
    await done;
    expect(await readFile(partPath)).toEqual(artifact);
    expect(cp.requests).toHaveLength(11);
    expect(new Set(cp.requests.map((r) => r.requestId)).size).toBe(11);
    expect(cp.requests.every((r) => r.sha256 === sha && r.length <= 1024)).toBe(true);
    expect(seen.at(-1)).toBe(artifact.length);
  });

  it('asks again for a chunk whose data does not match its chunkSha256', async () => {
    await setup();
    let tampered = 0;
    cp.tamper = (req, honest) => {
      if (req.offset !== 2048 || tampered > 0) return honest;
      tampered++;
      const data = Buffer.from(honest.data);
      data[0] = (data[0] ?? 0) ^ 0xff;
      return { header: honest.header, data };
    };
    const { partPath, done } = download();
    await done;
    expect(await readFile(partPath)).toEqual(artifact);
    expect(cp.requests.filter((r) => r.offset === 2048)).toHaveLength(2);
  });

  it('fails after maxRetries when a chunk keeps arriving corrupted', async () => {
    await setup({ maxRetries: 2 });
    cp.tamper = (req, honest) => (req.offset === 0 ? { header: honest.header, data: Buffer.alloc(honest.data.length) } : honest);
    const err = (await download().done.catch((e: unknown) => e)) as DownloadError;
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.outcome).toBe('failed');
    expect(err.message).toMatch(/chunk at offset 0: chunk data failed its chunkSha256 .*gave up after 3 attempts/);
  });

  it('asks again when an answer does not come', async () => {
    await setup({ requestTimeoutMs: 150 });
    let withheld = 0;
    cp.tamper = (req, honest) => (req.offset === 1024 && withheld++ === 0 ? null : honest);
    const { partPath, done } = download();
    await done;
    expect(await readFile(partPath)).toEqual(artifact);
    expect(cp.requests.filter((r) => r.offset === 1024).length).toBeGreaterThanOrEqual(2);
  });

  it('fails with the control plane\'s reason on an error frame', async () => {
    await setup();
    cp.tamper = (req) => ({ header: { requestId: req.requestId, sha256: req.sha256, error: { code: 'not-found', message: 'no such artifact' } }, data: Buffer.alloc(0) });
    await expect(download().done).rejects.toThrow(/not-found: no such artifact/);
  });

  it('refuses an artifact longer than its signed length (endless data)', async () => {
    await setup();
    const err = (await download(artifact.length - 100).done.catch((e: unknown) => e)) as DownloadError;
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.outcome).toBe('rejected');
    expect(err.message).toMatch(/endless data/);
    // Never asked for a byte past the signed length.
    expect(Math.max(...cp.requests.map((r) => r.offset + r.length))).toBeLessThanOrEqual(artifact.length - 100);
  });

  it('stops at once when aborted', async () => {
    await setup();
    cp.tamper = () => null;
    const controller = new AbortController();
    const { done } = download(artifact.length, controller.signal);
    await waitFor('first requests', () => cp.requests.length >= 4);
    controller.abort(new Error('superseded'));
    await expect(done).rejects.toThrow('superseded');
  });

  it('logs and drops malformed chunk frames, and keeps working', async () => {
    await setup();
    const before = captured.lines.length;
    await cp.publishRaw(deviceTopic(deviceId, 'artifact/chunk'), Buffer.from('garbage'));
    await waitFor('the drop logged', () => captured.lines.slice(before).find((l) => l.msg === 'invalid payload; dropped'));
    const { partPath, done } = download();
    await done;
    expect(await readFile(partPath)).toEqual(artifact);
  });
});
