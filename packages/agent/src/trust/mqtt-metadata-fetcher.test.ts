import { deviceTopic, encodeJson, metadataRequestSchema, type MetadataRequest } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { DownloadError, DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../mqtt/connection.js';
import { MessageDispatcher } from '../mqtt/dispatcher.js';
import { CapturedLog, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { METADATA_BASE_URL, MqttMetadataFetcher } from './mqtt-metadata-fetcher.js';

const DEVICE = 'gate-9';
const url = (name: string) => `${METADATA_BASE_URL}${name}`;

/** What the control plane side answers to one request: raw payloads published on the device's response topic, in order. */
type Answer = (req: MetadataRequest) => (Buffer | string)[];

let broker: TestBroker;
let controlPlane: MqttClient;
let conn: MqttConnection;
let messages: MessageDispatcher;
let log: CapturedLog;
let fetcher: MqttMetadataFetcher;
let answer: Answer;
const requests: MetadataRequest[] = [];

const ok = (req: MetadataRequest, body: string) => encodeJson({ requestId: req.requestId, name: req.name, status: 200, body });

beforeAll(async () => {
  broker = await startBroker();
  controlPlane = await mqtt.connectAsync(broker.url, { clientId: 'control-plane', reconnectPeriod: 0 });
  await controlPlane.subscribeAsync(deviceTopic(DEVICE, 'metadata/request'), { qos: 1 });
  controlPlane.on('message', (_topic, payload) => {
    const req = metadataRequestSchema.parse(JSON.parse(payload.toString('utf8')));
    requests.push(req);
    for (const p of answer(req)) void controlPlane.publishAsync(deviceTopic(DEVICE, 'metadata/response'), p, { qos: 1 });
  });

  log = new CapturedLog('debug');
  conn = new MqttConnection({ deviceId: DEVICE, url: broker.url, username: DEVICE, password: undefined, connectTimeoutMs: 5000, keepaliveSeconds: 30, reconnect: { minMs: 50, maxMs: 500 } }, log.logger);
  fetcher = new MqttMetadataFetcher(conn, { timeoutMs: 10_000 }, log.logger);
  messages = new MessageDispatcher(conn, log.logger);
  messages.register(fetcher.handler());
  messages.start();
  conn.start();
  await waitFor('the device to connect', () => conn.connected);
  await conn.subscribe(['metadata/response']);
});

afterAll(async () => {
  fetcher.close();
  messages.stop();
  await conn.stop();
  await controlPlane.endAsync();
  await broker.close();
});

beforeEach(() => {
  requests.length = 0;
  answer = (req) => [ok(req, `{"file":"${req.name}"}`)];
});

describe('metadata fetcher over MQTT', () => {
  it('asks for the file by name and returns its bytes', async () => {
    const bytes = await fetcher.downloadBytes(url('2.root.json'), 1000);
    expect(bytes.toString('utf8')).toBe('{"file":"2.root.json"}');
    expect(requests.map((r) => r.name)).toEqual(['2.root.json']);
    // downloadFile hands the same bytes over as a file.
    const viaFile = await fetcher.downloadFile(url('timestamp.json'), 1000, async (file) => (await import('node:fs/promises')).readFile(file, 'utf8'));
    expect(viaFile).toBe('{"file":"timestamp.json"}');
  });

  it('turns 404 into the DownloadHTTPError that ends a root walk, and 500 into one with its status', async () => {
    answer = (req) => [encodeJson({ requestId: req.requestId, name: req.name, status: req.name === 'timestamp.json' ? 500 : 404, error: 'nope' })];
    const missing = await fetcher.downloadBytes(url('3.root.json'), 1000).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(DownloadHTTPError);
    expect((missing as DownloadHTTPError).statusCode).toBe(404);
    const failed = await fetcher.downloadBytes(url('timestamp.json'), 1000).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(DownloadHTTPError);
    expect((failed as DownloadHTTPError).statusCode).toBe(500);
    expect((failed as Error).message).toMatch(/nope/);
  });

  it('refuses a body longer than the length it was allowed', async () => {
    answer = (req) => [ok(req, 'x'.repeat(101))];
    const err = await fetcher.downloadBytes(url('snapshot.json'), 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadLengthMismatchError);
    expect((err as Error).message).toBe('snapshot.json is 101 bytes, more than the 100 allowed');
    expect((await fetcher.downloadBytes(url('snapshot.json'), 101)).length).toBe(101);
  });

  it('gives up on a request nobody answers', async () => {
    answer = () => [];
    // A short timeout of its own, so the other tests' answers may take as long as a busy machine needs.
    const impatient = new MqttMetadataFetcher(conn, { timeoutMs: 200 }, log.logger);
    const err = await impatient.downloadBytes(url('targets.json'), 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toBe('no answer for targets.json within 200 ms');
    await waitFor('the request to reach the control plane', () => requests.some((r) => r.name === 'targets.json'));
  });

  it('ignores bad, foreign and mismatched responses with a logged reason, and takes the right one', async () => {
    answer = (req) => [
      '{not json',
      encodeJson({ requestId: req.requestId, name: '../../etc/passwd', status: 200, body: 'x' }),
      encodeJson({ requestId: 'someone-else', name: req.name, status: 200, body: 'x' }),
      encodeJson({ requestId: req.requestId, name: 'snapshot.json', status: 200, body: 'x' }),
      ok(req, 'the right one'),
    ];
    const before = log.lines.length;
    expect((await fetcher.downloadBytes(url('timestamp.json'), 100)).toString()).toBe('the right one');
    const said = log.lines.slice(before);
    const invalid = said.filter((l) => l.msg === 'invalid payload; dropped').map((l) => String(l.reason));
    expect(invalid).toHaveLength(2);
    expect(invalid[0]).toMatch(/^malformed JSON/);
    expect(invalid[1]).toMatch(/a TUF metadata file name/);
    expect(said.some((l) => l.msg === 'metadata response for no pending request; ignored')).toBe(true);
    expect(said.some((l) => l.msg === 'metadata response names another file; ignored')).toBe(true);
  });

  it('refuses names and addresses outside the contract without asking', async () => {
    await expect(fetcher.downloadBytes(url('keys.pem'), 100)).rejects.toThrow(/not a metadata file name/);
    await expect(fetcher.downloadBytes('https://example.invalid/timestamp.json', 100)).rejects.toBeInstanceOf(DownloadError);
    expect(requests).toHaveLength(0);
  });
});
