import type { Socket } from 'node:net';
import { deviceTopic } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerLimitsOptions } from './broker-limits.js';
import {
  connectControlPlane,
  connectDevice,
  connectPacket,
  DEVICE_SECRET,
  rawConnection,
  startTestBroker,
  subscribePacket,
  until,
  type TestBroker,
} from './test-support/broker-harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** 512 x 64 KiB (32 MiB): more than loopback's socket buffers on both ends can hold, so the broker has to buffer the rest. */
const FROZEN_MESSAGES = 512;
const FROZEN_PAYLOAD = Buffer.alloc(64 * KiB, 0x66);

describe('embedded broker with a subscriber that stops reading', () => {
  let t: TestBroker | undefined;
  const clients: MqttClient[] = [];
  const sockets: Socket[] = [];

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await t?.stop();
    t = undefined;
  });

  /**
   * Waits for the broker to drop the frozen device (the frozen end never sees it: its unread
   * bytes sit in front of the FIN). Left: the control plane's client, if any, and dev-ok.
   */
  async function cutOff(t: TestBroker): Promise<void> {
    await until('the frozen device cut off', () => t.broker.stats.slowConsumerDisconnects === 1);
    await until('the frozen device gone', () => t.broker.connectedClients === clients.length);
  }

  async function setUp(limits: Partial<BrokerLimitsOptions>): Promise<{ t: TestBroker; got: string[] }> {
    t = await startTestBroker({ limits: { rate: null, ...limits } });
    // Connects, subscribes to its own desired state, and from then on never reads a byte.
    const frozen = await rawConnection(t.broker.port);
    sockets.push(frozen);
    let seen = 0;
    const acks = new Promise<void>((resolve) => {
      const onData = (chunk: Buffer): void => {
        seen += chunk.length;
        if (seen < 9) return; // CONNACK (4 bytes) and SUBACK (5)
        frozen.off('data', onData);
        frozen.pause();
        resolve();
      };
      frozen.on('data', onData);
    });
    frozen.write(Buffer.concat([connectPacket('dev-frozen', 'dev-frozen', DEVICE_SECRET), subscribePacket(1, deviceTopic('dev-frozen', 'desired'), 1)]));
    await acks;

    const healthy = await connectDevice(t.url, 'dev-ok');
    clients.push(healthy);
    const got: string[] = [];
    healthy.on('message', (_topic, payload) => got.push(payload.toString()));
    await healthy.subscribeAsync(deviceTopic('dev-ok', 'desired'), { qos: 1 });
    return { t, got };
  }

  it('keeps delivering to others while the control plane publishes to a frozen device, and cuts the frozen one off at its buffer limit', async () => {
    const { t, got } = await setUp({ maxOutgoingBytes: MiB });
    const cp = await connectControlPlane(t);
    clients.push(cp);

    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < FROZEN_MESSAGES; i++) {
      sent.push(cp.publishAsync(deviceTopic('dev-frozen', 'desired'), FROZEN_PAYLOAD, { qos: 1 }));
      sent.push(cp.publishAsync(deviceTopic('dev-ok', 'desired'), `m${i}`, { qos: 1 }));
    }
    await until('every message to the healthy device', () => got.length === FROZEN_MESSAGES);
    expect(got).toEqual(Array.from({ length: FROZEN_MESSAGES }, (_, i) => `m${i}`));
    // The control plane's publishes were all taken, none left hanging on the frozen device.
    await Promise.all(sent);
    await cutOff(t);

    const stats = t.broker.stats;
    expect(stats.slowConsumerDisconnects).toBe(1);
    expect(stats.clients['dev-frozen']?.slowConsumerDisconnects).toBe(1);
    expect(stats.clients['dev-ok']).toBeUndefined();
    const line = t.lines.find((l) => l.msg === 'mqtt client disconnected: it does not read what it is sent');
    expect(line).toMatchObject({ clientId: 'dev-frozen', reason: 'buffer-full' });
    expect(line?.bufferedBytes as number).toBeGreaterThan(MiB);
  });

  it('keeps delivering the broker’s own publishes (chunk frames) to others while one device is frozen', async () => {
    const { t, got } = await setUp({ maxOutgoingBytes: MiB });
    const toFrozen: Promise<boolean>[] = [];
    const toHealthy: Promise<boolean>[] = [];
    for (let i = 0; i < FROZEN_MESSAGES; i++) {
      toFrozen.push(t.broker.publish(deviceTopic('dev-frozen', 'desired'), FROZEN_PAYLOAD, { qos: 0 }));
      toHealthy.push(t.broker.publish(deviceTopic('dev-ok', 'desired'), Buffer.from(`c${i}`), { qos: 0 }));
    }
    await until('every frame to the healthy device', () => got.length === FROZEN_MESSAGES);
    expect(got).toEqual(Array.from({ length: FROZEN_MESSAGES }, (_, i) => `c${i}`));
    await Promise.all(toHealthy);
    // The frozen device's publishes wait for its socket (the chunk server's output budget counts on
    // that) and settle when it is cut off.
    await cutOff(t);
    await Promise.all(toFrozen);
    expect(t.broker.stats.slowConsumerDisconnects).toBe(1);
  });

  it('cuts off a device whose buffer stays full past the drain timeout, even under the byte limit', async () => {
    const { t, got } = await setUp({ maxOutgoingBytes: 256 * MiB, drainTimeoutMs: 300 });
    const cp = await connectControlPlane(t);
    clients.push(cp);
    for (let i = 0; i < FROZEN_MESSAGES; i++) cp.publish(deviceTopic('dev-frozen', 'desired'), FROZEN_PAYLOAD, { qos: 1 });
    await cp.publishAsync(deviceTopic('dev-ok', 'desired'), 'after', { qos: 1 });
    await until('the healthy device to get its message', () => got.includes('after'));
    await cutOff(t);
    expect(t.broker.stats.clients['dev-frozen']?.slowConsumerDisconnects).toBe(1);
    expect(t.lines.find((l) => l.msg === 'mqtt client disconnected: it does not read what it is sent')).toMatchObject({ clientId: 'dev-frozen', reason: 'drain-timeout' });
  });
});
