import { allDevicesFilter, deviceTopic } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PacketSizeFraming } from './packet-size-guard.js';
import { PayloadLimits } from './payload-limits.js';
import {
  closed,
  connectControlPlane,
  connectDevice,
  connectPacket,
  DEVICE_SECRET,
  fixedHeader,
  rawConnection,
  startTestBroker,
  until,
  type TestBroker,
} from './test-support/broker-harness.js';

const TELEMETRY_LIMIT = 1000;

describe('payload limits per topic kind', () => {
  it('has a limit for every device-to-cloud kind and the small default for anything else', () => {
    const limits = new PayloadLimits({ telemetry: 500 });
    expect(limits.limitFor(deviceTopic('dev-1', 'telemetry'))).toBe(500);
    expect(limits.limitFor(deviceTopic('dev-1', 'status'))).toBe(4096);
    expect(limits.limitFor(deviceTopic('dev-1', 'provision/request'))).toBe(8192);
    expect(limits.limitFor('some/other/topic')).toBe(8192);
    // The socket-level cap is the largest payload plus room for topic and properties.
    expect(limits.maxPacketBytes).toBe(128 * 1024 + 4096);
  });

  it('follows MQTT framing across chunk boundaries and reports the first packet over the cap', () => {
    const f = new PacketSizeFraming(300);
    // A 200-byte packet cut in three, then a header announcing 301 bytes whose length bytes are split too.
    const small = Buffer.concat([fixedHeader(0x30, 200), Buffer.alloc(200)]);
    expect(f.feed(small.subarray(0, 1))).toBe(-1);
    expect(f.feed(small.subarray(1, 50))).toBe(-1);
    expect(f.feed(small.subarray(50))).toBe(-1);
    const big = fixedHeader(0x30, 301);
    expect(f.feed(big.subarray(0, 2))).toBe(-1); // 301 needs two length bytes; the first says 45 so far
    expect(f.feed(big.subarray(2))).toBe(301);
    // Zero-length packets (PINGREQ) and a packet exactly at the cap pass.
    const g = new PacketSizeFraming(300);
    expect(g.feed(Buffer.concat([fixedHeader(0xc0, 0), fixedHeader(0x30, 300), Buffer.alloc(300), fixedHeader(0xc0, 0)]))).toBe(-1);
  });
});

describe('embedded broker with payload limits', () => {
  let t: TestBroker;
  let cp: MqttClient;
  const received: { topic: string; payload: Buffer }[] = [];
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    t = await startTestBroker({ limits: { maxPayloadBytes: { telemetry: TELEMETRY_LIMIT }, rate: null } });
    cp = await connectControlPlane(t);
    cp.on('message', (topic, payload) => received.push({ topic, payload }));
    await cp.subscribeAsync([allDevicesFilter('telemetry'), allDevicesFilter('status')], { qos: 1 });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  });

  afterAll(async () => {
    await cp.endAsync();
    await t.stop();
  });

  async function device(id: string): Promise<MqttClient> {
    const c = await connectDevice(t.url, id);
    clients.push(c);
    return c;
  }

  it('acknowledges and drops a publish over its topic kind limit, keeps the connection, and delivers what follows', async () => {
    const dev = await device('dev-a');
    let closes = 0;
    dev.on('close', () => closes++);
    const topic = deviceTopic('dev-a', 'telemetry');
    for (let i = 0; i < 3; i++) await dev.publishAsync(topic, Buffer.alloc(TELEMETRY_LIMIT + 1 + i, 0x61), { qos: 1 });
    dev.publish(topic, Buffer.alloc(TELEMETRY_LIMIT * 4, 0x62), { qos: 0 });
    await dev.publishAsync(topic, Buffer.concat([Buffer.from('last'), Buffer.alloc(TELEMETRY_LIMIT - 4, 0x63)]), { qos: 1 });

    await until('the publish at the limit', () => received.some((m) => m.payload.subarray(0, 4).toString() === 'last'));
    // Nothing of the four over the limit came before it, on its topic or anywhere.
    expect(received.filter((m) => m.topic === topic).map((m) => m.payload.length)).toEqual([TELEMETRY_LIMIT]);
    expect(received.every((m) => m.payload.length <= TELEMETRY_LIMIT)).toBe(true);
    expect(dev.connected).toBe(true);
    expect(closes).toBe(0);

    const stats = t.broker.stats;
    expect(stats.oversizePublishes).toBe(4);
    expect(stats.clients['dev-a']?.oversizePublishes).toBe(4);
    // Logged once for the client in this window, not once per publish.
    expect(t.lines.filter((l) => l.msg === 'mqtt publish dropped: payload over the limit for its topic' && l.clientId === 'dev-a')).toHaveLength(1);
  });

  it('keeps the retained message an oversize retained publish would have replaced', async () => {
    const dev = await device('dev-r');
    const topic = deviceTopic('dev-r', 'status');
    await dev.publishAsync(topic, Buffer.from('{"state":"online"}'), { qos: 1, retain: true });
    await dev.publishAsync(topic, Buffer.alloc(5000, 0x7b), { qos: 1, retain: true });

    const late = await connectControlPlane(t);
    try {
      const first = new Promise<Buffer>((resolve) => late.once('message', (_topic, payload) => resolve(payload)));
      await late.subscribeAsync(topic, { qos: 1 });
      expect((await first).toString()).toBe('{"state":"online"}');
    } finally {
      await late.endAsync();
    }
  });

  it('closes a connection whose packet header announces more than the cap, without waiting for the body', async () => {
    const other = await device('dev-b');
    const beforePackets = t.broker.stats.oversizePackets;

    // Authenticated, then a PUBLISH header announcing 256 MB and the first 64 KiB of it.
    const sock = await rawConnection(t.broker.port);
    sock.write(connectPacket('dev-c', 'dev-c', DEVICE_SECRET));
    await new Promise((resolve) => sock.once('data', resolve)); // CONNACK
    sock.write(Buffer.concat([fixedHeader(0x30, 256 * 1024 * 1024 - 1), Buffer.alloc(64 * 1024)]));
    await closed(sock);

    // Before CONNECT is even complete: a CONNECT header announcing 100 MB.
    const anon = await rawConnection(t.broker.port);
    anon.write(Buffer.concat([fixedHeader(0x10, 100 * 1024 * 1024), Buffer.alloc(1024)]));
    await closed(anon);

    expect(t.broker.stats.oversizePackets).toBe(beforePackets + 2);
    expect(t.broker.stats.clients['dev-c']?.oversizePackets).toBe(1);
    // The other device is untouched and still delivers.
    await other.publishAsync(deviceTopic('dev-b', 'telemetry'), Buffer.from('still here'), { qos: 1 });
    await until('dev-b still delivers', () => received.some((m) => m.payload.toString() === 'still here'));
  });

  it('cuts off a device client that publishes over the cap, and lets the control plane send that much', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x64);
    const dev = await device('dev-d');
    const gone = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    dev.publish(deviceTopic('dev-d', 'telemetry'), big, { qos: 0 });
    await gone;

    // The control plane's own client is not capped: a large desired state reaches its device.
    const target = await device('dev-e');
    const got = new Promise<Buffer>((resolve) => target.once('message', (_topic, payload) => resolve(payload)));
    await target.subscribeAsync(deviceTopic('dev-e', 'desired'), { qos: 1 });
    await cp.publishAsync(deviceTopic('dev-e', 'desired'), big, { qos: 1 });
    expect((await got).equals(big)).toBe(true);
    expect(received.some((m) => m.topic === deviceTopic('dev-d', 'telemetry'))).toBe(false);
  });
});
