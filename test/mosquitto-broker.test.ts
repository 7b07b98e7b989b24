import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CHUNK_FRAME_HEADROOM,
  decodeChunkFrame,
  deviceTopic,
  encodeChunkFrame,
  encodeJson,
  MAX_CHUNK_BYTES,
  MAX_METADATA_BYTES,
  metadataResponseSchema,
} from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MosquittoBrokerAccess } from '../packages/control-plane/src/broker/mosquitto-broker-access.js';
import { PERCH_MAX_PACKET_BYTES } from '../packages/control-plane/src/broker/mosquitto-config.js';
import { DynsecClient } from '../packages/control-plane/src/broker/mosquitto-dynsec.js';
import { connectTo, startMosquitto, whenClosed, type MosquittoServer } from './support/mosquitto-server.js';
import { waitUntil } from './support/wait-until.js';

const DEVICE = 'cam-gate';
const DEVICE_PW = 'password-of-cam-gate-0123456789abcdef';

/** Resolves with the first `count` messages on topics matching `accept`. */
function receive(client: MqttClient, count: number, accept: (topic: string) => boolean = () => true): Promise<{ topic: string; payload: Buffer }[]> {
  const got: { topic: string; payload: Buffer }[] = [];
  return new Promise((resolve) => {
    const on = (topic: string, payload: Buffer) => {
      if (!accept(topic)) return;
      got.push({ topic, payload });
      if (got.length === count) {
        client.off('message', on);
        resolve(got);
      }
    };
    client.on('message', on);
  });
}

describe('Mosquitto with the config Perch generates', () => {
  let server: MosquittoServer;
  let dynsec: DynsecClient;
  const clients: MqttClient[] = [];
  const connect = async (opts: Parameters<typeof connectTo>[1]) => {
    const c = await connectTo(server, opts);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    server = await startMosquitto();
    dynsec = await DynsecClient.connect(server.url, { ...server.admin, clientId: 'cp-admin' });
    await new MosquittoBrokerAccess(dynsec).addDevice(DEVICE, DEVICE_PW);
  });

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true);
    await dynsec?.close();
    await server?.stop();
  });

  it('starts with the plugin loaded and no complaint about the config', () => {
    expect(server.log()).toMatch(/Loading plugin: .*mosquitto_dynamic_security\.so/);
    expect(server.log()).not.toMatch(/Error|Unknown configuration/i);
  });

  it('refuses anonymous clients', async () => {
    const err = await mqtt.connectAsync(server.url, { reconnectPeriod: 0, clientId: 'anon' }).catch((e: unknown) => e);
    expect((err as { code?: number }).code).toBe(5);
  });

  it('lets the control plane publish and subscribe anywhere under perch/', async () => {
    const cp = await connect({ ...server.admin, clientId: 'cp-everywhere' });
    const grants = await cp.subscribeAsync({ 'perch/#': { qos: 1 }, '$share/perch-cp/perch/v1/devices/+/events': { qos: 1 } });
    expect(grants.map((g) => g.qos)).toEqual([1, 1]);
    const topics = [deviceTopic(DEVICE, 'telemetry'), deviceTopic(DEVICE, 'desired'), deviceTopic(DEVICE, 'provision/response'), 'perch/v2/a-later-contract'];
    const got = receive(cp, topics.length);
    for (const t of topics) await cp.publishAsync(t, `to ${t}`, { qos: 1 });
    expect((await got).map((m) => m.topic)).toEqual(topics);
  });

  it('shares telemetry between control plane replicas with a shared subscription, each message to one of them', async () => {
    const filter = '$share/perch-cp/perch/v1/devices/+/telemetry';
    const replicas = [await connect({ ...server.admin, clientId: 'cp-replica-1' }), await connect({ ...server.admin, clientId: 'cp-replica-2' })];
    const seen: string[][] = [[], []];
    const windows = Array.from({ length: 10 }, (_, i) => `window-${i}`);
    let total = 0;
    const allDelivered = new Promise<void>((resolve) =>
      replicas.forEach((r, i) =>
        r.on('message', (_t, p) => {
          seen[i]?.push(p.toString());
          if (++total === windows.length) resolve();
        }),
      ),
    );
    for (const r of replicas) expect((await r.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos)).toEqual([1]);

    const device = await connect({ username: DEVICE, password: DEVICE_PW, clientId: DEVICE });
    for (const w of windows) await device.publishAsync(deviceTopic(DEVICE, 'telemetry'), w, { qos: 1 });
    await allDelivered;
    // A barrier: a duplicate of any window would have come before this one.
    const barrier = Promise.race(replicas.map((r) => receive(r, 1)));
    await device.publishAsync(deviceTopic(DEVICE, 'telemetry'), 'barrier', { qos: 1 });
    await barrier;
    expect([...(seen[0] ?? []), ...(seen[1] ?? [])].filter((w) => w !== 'barrier').sort()).toEqual([...windows].sort());
    // Mosquitto hands a shared subscription's messages round the group.
    expect(seen.every((s) => s.length > 0)).toBe(true);
  });

  describe('max_packet_size', () => {
    it('passes the largest artifact chunk frame to the device', async () => {
      const cp = await connect({ ...server.admin, clientId: 'cp-chunks' });
      const device = await connect({ username: DEVICE, password: DEVICE_PW, clientId: DEVICE });
      await device.subscribeAsync(deviceTopic(DEVICE, 'artifact/chunk'), { qos: 0 });
      const data = Buffer.alloc(MAX_CHUNK_BYTES, 7);
      const header = { requestId: 'r'.repeat(64), sha256: 'a'.repeat(64), offset: 0, length: data.length, total: data.length, chunkSha256: 'b'.repeat(64) };
      const frame = encodeChunkFrame(header, data);
      expect(frame.length).toBeLessThanOrEqual(CHUNK_FRAME_HEADROOM + MAX_CHUNK_BYTES);
      const got = receive(device, 1);
      await cp.publishAsync(deviceTopic(DEVICE, 'artifact/chunk'), frame, { qos: 0 });
      const [msg] = await got;
      const decoded = decodeChunkFrame(msg?.payload ?? Buffer.alloc(0));
      expect(decoded.ok && decoded.value.data.equals(data)).toBe(true);
    });

    it('passes the largest metadata response, escaped at worst', async () => {
      const cp = await connect({ ...server.admin, clientId: 'cp-metadata' });
      const device = await connect({ username: DEVICE, password: DEVICE_PW, clientId: DEVICE });
      await device.subscribeAsync(deviceTopic(DEVICE, 'metadata/response'), { qos: 1 });
      const payload = encodeJson(metadataResponseSchema.parse({ requestId: 'm1', name: 'targets.json', status: 200, body: '"'.repeat(MAX_METADATA_BYTES) }));
      const got = receive(device, 1);
      await cp.publishAsync(deviceTopic(DEVICE, 'metadata/response'), payload, { qos: 1 });
      const [msg] = await got;
      expect(msg?.payload.length).toBe(payload.length);
    });

    it('disconnects a client that sends a bigger packet, and delivers none of it', async () => {
      const cp = await connect({ ...server.admin, clientId: 'cp-listener' });
      await cp.subscribeAsync('perch/v1/devices/+/telemetry', { qos: 1 });
      const received: string[] = [];
      cp.on('message', (_t, p) => received.push(p.length > 100 ? 'oversize' : p.toString()));
      // MQTT 3.1.1: no packet size in the CONNACK, so mqtt.js sends it and the broker must refuse it.
      const sender = await connect({ ...server.admin, clientId: 'cp-oversize', protocolVersion: 4 });
      const closed = whenClosed(sender);
      sender.publish(deviceTopic(DEVICE, 'telemetry'), Buffer.alloc(PERCH_MAX_PACKET_BYTES + 1), { qos: 1 });
      await closed;
      await waitUntil(() => /cp-oversize disconnected due to oversize packet/.test(server.log()), 'the broker to log why');
      // The broker was done with the dropped connection before this was sent.
      const device = await connect({ username: DEVICE, password: DEVICE_PW, clientId: DEVICE });
      const barrier = receive(cp, 1, () => true);
      await device.publishAsync(deviceTopic(DEVICE, 'telemetry'), 'barrier', { qos: 1 });
      await barrier;
      expect(received).toEqual(['barrier']);
    });
  });

  it('keeps devices and retained state across a restart, with the config written again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'perch-mosquitto-restart-'));
    try {
      const first = await startMosquitto({ dir });
      const admin = await DynsecClient.connect(first.url, { ...first.admin, clientId: 'cp-admin-r' });
      await new MosquittoBrokerAccess(admin).addDevice('cam-restart', 'password-of-cam-restart-0123456789');
      const cp = await connectTo(first, { ...first.admin, clientId: 'cp-r' });
      await cp.publishAsync(deviceTopic('cam-restart', 'desired'), 'generation-7', { qos: 1, retain: true });
      await cp.endAsync();
      await admin.close();
      await first.stop();

      // startMosquitto runs writeMosquittoConfig again on the same folder, as an operator would.
      const second = await startMosquitto({ dir });
      try {
        expect(second.admin).toEqual(first.admin);
        const device = await connectTo(second, { username: 'cam-restart', password: 'password-of-cam-restart-0123456789', clientId: 'cam-restart' });
        const got = receive(device, 1);
        await device.subscribeAsync(deviceTopic('cam-restart', 'desired'), { qos: 1 });
        expect((await got)[0]?.payload.toString()).toBe('generation-7');
        await device.endAsync();
      } finally {
        await second.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Mosquitto with TLS', () => {
  let dir: string;
  let server: MosquittoServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'perch-mosquitto-tls-'));
    // A self-signed certificate for 127.0.0.1 that is its own CA.
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.crt'),
    ]);
    server = await startMosquitto({ dir: join(dir, 'broker'), config: { tls: { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') } } });
  });

  afterAll(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts the control plane over TLS with the CA, and no plain MQTT', async () => {
    const ca = await readFile(join(dir, 'server.crt'));
    const tlsUrl = `mqtts://127.0.0.1:${server.port}`;
    const dynsec = await DynsecClient.connect(tlsUrl, { ...server.admin, clientId: 'cp-tls', ca });
    expect((await dynsec.listRoles()).totalCount).toBeGreaterThan(0);
    await dynsec.close();

    const plain = await mqtt.connectAsync(server.url, { ...server.admin, clientId: 'cp-plain', reconnectPeriod: 0, connectTimeout: 5_000 }, false).catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(Error);
    const untrusted = await mqtt.connectAsync(tlsUrl, { ...server.admin, clientId: 'cp-untrusted', reconnectPeriod: 0 }, false).catch((e: unknown) => e);
    expect(String(untrusted)).toMatch(/self[- ]signed/i);
  });

  it('writes the TLS lines into the generated config', async () => {
    expect(await readFile(server.files.confFile, 'utf8')).toMatch(/listener \d+ 127\.0\.0\.1\ncertfile .*server\.crt\nkeyfile .*server\.key\nrequire_certificate false/);
  });
});
