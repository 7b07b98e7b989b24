import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { allDevicesFilter, deviceTopic, encodeJson, metadataResponseSchema, type MetadataResponse } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../agent/src/test-support/harness.js';
import { EmbeddedBroker } from '../broker/embedded-broker.js';
import { ControlPlaneBus } from '../bus/control-plane-bus.js';
import { DeviceMessageDispatcher } from '../bus/device-message-dispatcher.js';
import { DeviceIdentityService } from '../identity/device-identity-service.js';
import { openDatabase, type Db } from '../store/database.js';
import { DeviceStore } from '../store/device-store.js';
import { MetadataServer } from './metadata-server.js';
import { TufRepository, tufRepositoryPaths } from './tuf-repository.js';

const DEVICE = 'dev-1';

const logLines: Record<string, unknown>[] = [];
const log = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  }),
);

let dataDir: string;
let db: Db;
let repoDir: string;
let broker: EmbeddedBroker;
let bus: ControlPlaneBus;
let dispatcher: DeviceMessageDispatcher;
let server: MetadataServer;
let device: MqttClient;
const responses: MetadataResponse[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'perch-metadata-server-'));
  const paths = tufRepositoryPaths(dataDir);
  repoDir = paths.dir;
  const repo = new TufRepository({ ...paths, log });
  await repo.open();
  // The repository, except that reading targets.json fails as a broken disk would.
  const source = {
    readFile: async (name: string) => {
      if (name === 'targets.json') throw new Error('EIO: i/o error');
      return repo.readFile(name);
    },
  };

  db = openDatabase(join(dataDir, 'perch.db'));
  const identity = new DeviceIdentityService(db, new DeviceStore(db), log);
  const devicePassword = identity.provision(DEVICE).password;
  const password = randomBytes(12).toString('hex');
  broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, controlPlaneUsername: 'cp', controlPlanePassword: password, devices: identity }, log);
  await broker.start();
  const url = `mqtt://127.0.0.1:${broker.port}`;
  bus = new ControlPlaneBus({ url, username: 'cp', password, clientId: 'cp-metadata-test' }, log);
  server = new MetadataServer(source, bus, log);
  dispatcher = new DeviceMessageDispatcher(log).register(server.handler());
  bus.onMessage((topic, payload) => dispatcher.dispatch(topic, payload));
  await bus.start([allDevicesFilter('metadata/request')]);

  device = await mqtt.connectAsync(url, { clientId: DEVICE, username: DEVICE, password: devicePassword, reconnectPeriod: 0 });
  device.on('message', (_topic, payload) => responses.push(metadataResponseSchema.parse(JSON.parse(payload.toString('utf8')))));
  await device.subscribeAsync(deviceTopic(DEVICE, 'metadata/response'), { qos: 1 });
  // Until the control plane's own subscription is in, a request may go unheard: ask until one is answered.
  await waitFor('the control plane to answer', async () => {
    await send({ requestId: 'probe', name: 'root.json' });
    await new Promise((r) => setTimeout(r, 100));
    return responses.some((r) => r.requestId === 'probe');
  });
});

afterAll(async () => {
  await device.endAsync();
  await bus.stop();
  await broker.stop();
  db.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function send(payload: unknown): Promise<void> {
  const body = typeof payload === 'string' ? payload : encodeJson(payload);
  await device.publishAsync(deviceTopic(DEVICE, 'metadata/request'), body, { qos: 1 });
}

async function ask(name: string): Promise<MetadataResponse> {
  const requestId = randomUUID();
  await send({ requestId, name });
  return waitFor(`the answer for ${name}`, () => responses.find((r) => r.requestId === requestId));
}

describe('metadata server', () => {
  it('answers with the file exactly as the repository holds it', async () => {
    for (const name of ['1.root.json', 'root.json', 'timestamp.json', 'snapshot.json']) {
      const res = await ask(name);
      expect(res).toMatchObject({ name, status: 200 });
      expect(res.status === 200 && res.body).toBe(await readFile(join(repoDir, name), 'utf8'));
    }
  });

  it('answers 404 for a file the repository does not have', async () => {
    expect(await ask('2.root.json')).toMatchObject({ name: '2.root.json', status: 404, error: 'no 2.root.json in the repository' });
    expect(await ask('9.snapshot.json')).toMatchObject({ status: 404 });
    expect(await ask('1.timestamp.json')).toMatchObject({ status: 404 });
  });

  it('answers 500 when the file cannot be read, and keeps serving', async () => {
    expect(await ask('targets.json')).toMatchObject({ status: 500, error: 'reading targets.json failed' });
    expect(server.stats.errors).toBe(1);
    expect(await ask('timestamp.json')).toMatchObject({ status: 200 });
  });

  it('drops malformed requests with a logged reason and keeps serving', async () => {
    const dropped = dispatcher.stats.dropped;
    await send('{not json');
    await send({ requestId: 'bad-name', name: '../keys/root/root.pem' });
    await send({ requestId: '', name: 'root.json' });
    await waitFor('three dropped requests', () => dispatcher.stats.dropped === dropped + 3);
    const reasons = logLines.filter((l) => l.msg === 'dropped device message').map((l) => String(l.reason));
    expect(reasons.some((r) => r.startsWith('malformed JSON'))).toBe(true);
    expect(reasons.some((r) => r.includes('a TUF metadata file name such as 2.root.json'))).toBe(true);
    expect(reasons.some((r) => r.startsWith('requestId:'))).toBe(true);
    expect(responses.some((r) => r.requestId === 'bad-name' || r.requestId === '')).toBe(false);
    expect(await ask('root.json')).toMatchObject({ status: 200 });
  });
});
