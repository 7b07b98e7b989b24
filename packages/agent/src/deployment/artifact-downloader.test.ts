import { createHash, randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deviceTopic, generateSigningKey } from '@perch/shared';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../mqtt/connection.js';
import { MessageDispatcher } from '../mqtt/dispatcher.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { ArtifactDownloader, DownloadError, type DownloadOptions } from './artifact-downloader.js';
import { DownloadJournal } from './download-journal.js';

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
    cp = new ControlPlaneDouble(broker.url);
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

  it('resumes after a restart from the part file, fetching only the chunks it lacks', async () => {
    await setup();
    const partPath = join(dir.path, 'resume.part');
    // The first attempt is cut off once 6 of the 11 chunks are in (as a crash or a superseding deployment would).
    const first = new AbortController();
    const cut = downloader.download({ sha256: sha, length: artifact.length, partPath, signal: first.signal, onProgress: (b) => b >= 6 * 1024 && first.abort(new Error('cut off')) });
    await expect(cut).rejects.toThrow('cut off');
    const journalText = await readFile(DownloadJournal.pathFor(partPath), 'utf8');
    const doneOffsets = journalText.trim().split('\n').slice(1).map((l) => Number(l.split(' ')[0]));
    const had = journalText.trim().split('\n').length - 1;
    expect(had).toBeGreaterThanOrEqual(6);
    // A new downloader, as after an agent restart.
    cp.requests.length = 0;
    await setup();
    const progress: number[] = [];
    await downloader.download({ sha256: sha, length: artifact.length, partPath, signal: new AbortController().signal, onProgress: (b) => progress.push(b) });
    expect(await readFile(partPath)).toEqual(artifact);
    // Only the missing chunks are asked for (the cut-off attempt's last requests may still reach the control plane late, for those same chunks).
    const missing = Array.from({ length: 11 }, (_, i) => i * 1024).filter((o) => !doneOffsets.includes(o));
    expect([...new Set(cp.requests.map((r) => r.offset))].sort((a, b) => a - b)).toEqual(missing);
    // Progress starts from what was already there.
    expect(progress[0]).toBe(doneOffsets.reduce((n, o) => n + Math.min(1024, artifact.length - o), 0));
  });

  it('fetches again a recorded chunk whose bytes on disk do not match, and ignores a journal of other bytes', async () => {
    await setup();
    const partPath = join(dir.path, 'torn.part');
    await downloader.download({ sha256: sha, length: artifact.length, partPath, signal: new AbortController().signal });
    // A power cut that kept the journal line but not the data of chunk 2.
    const fh = await open(partPath, 'r+');
    await fh.write(Buffer.alloc(100), 0, 100, 2048);
    await fh.close();
    cp.requests.length = 0;
    await downloader.download({ sha256: sha, length: artifact.length, partPath, signal: new AbortController().signal });
    expect(await readFile(partPath)).toEqual(artifact);
    expect(cp.requests.map((r) => r.offset)).toEqual([2048]);
    // Another chunk size: nothing recorded can be trusted to line up, so all of it is fetched.
    cp.requests.length = 0;
    await setup({ chunkBytes: 2048 });
    await downloader.download({ sha256: sha, length: artifact.length, partPath, signal: new AbortController().signal });
    expect(await readFile(partPath)).toEqual(artifact);
    expect(cp.requests).toHaveLength(6);
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
