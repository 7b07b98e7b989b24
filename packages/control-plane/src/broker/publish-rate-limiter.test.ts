import { allDevicesFilter, deviceTopic } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { PublishRateLimits } from './publish-rate-limiter.js';
import { PublishRateLimiter } from './publish-rate-limiter.js';
import { connectControlPlane, connectDevice, startTestBroker, until, type TestBroker } from './test-support/broker-harness.js';

const MiB = 1024 * 1024;

describe('publish rate limiter', () => {
  const limits: PublishRateLimits = { messagesPerSecond: 10, burstMessages: 5, bytesPerSecond: MiB, burstBytes: MiB, maxDelayMs: 1000 };

  it('drops QoS 0 over the rate and lends to QoS 1, per client id', () => {
    const r = new PublishRateLimiter(limits);
    for (let i = 0; i < 5; i++) expect(r.judge('a', 0, 10, 0)).toEqual({ kind: 'pass' });
    expect(r.judge('a', 0, 10, 0)).toEqual({ kind: 'drop' });
    // Another client has its own buckets.
    expect(r.judge('b', 0, 10, 0)).toEqual({ kind: 'pass' });
    // QoS 1 borrows: one message at 10/s is 100 ms of debt, the next 200 ms.
    expect(r.judge('a', 1, 10, 0)).toEqual({ kind: 'delay', ms: 100 });
    expect(r.judge('a', 1, 10, 0)).toEqual({ kind: 'delay', ms: 200 });
    // While in debt, QoS 0 is dropped.
    expect(r.judge('a', 0, 10, 150)).toEqual({ kind: 'drop' });
    // Too far behind: disconnect.
    for (let i = 0; i < 10; i++) r.judge('a', 1, 10, 200);
    expect(r.judge('a', 1, 10, 200).kind).toBe('disconnect');
    // Bytes count as well as messages.
    expect(r.judge('c', 0, MiB + 1, 0)).toEqual({ kind: 'drop' });
  });

  it('forgets clients whose buckets are full again', () => {
    const r = new PublishRateLimiter(limits);
    r.judge('a', 0, 10, 0);
    r.judge('b', 1, 10, 0);
    r.sweep(50);
    expect(r.trackedClients).toBe(2);
    r.sweep(10_000);
    expect(r.trackedClients).toBe(0);
  });
});

describe('embedded broker with publish rate limits', () => {
  let t: TestBroker | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await t?.stop();
    t = undefined;
  });

  /** A broker with `rate`, and the control plane's client collecting every device's telemetry as [deviceId, text]. */
  async function setUp(rate: PublishRateLimits): Promise<{ t: TestBroker; got: [string, string][] }> {
    t = await startTestBroker({ limits: { rate } });
    const cp = await connectControlPlane(t);
    clients.push(cp);
    const got: [string, string][] = [];
    cp.on('message', (topic, payload) => got.push([topic.split('/')[3] as string, payload.toString()]));
    await cp.subscribeAsync(allDevicesFilter('telemetry'), { qos: 1 });
    return { t, got };
  }

  async function device(url: string, id: string): Promise<MqttClient> {
    const c = await connectDevice(url, id);
    clients.push(c);
    return c;
  }

  function from(got: [string, string][], id: string): string[] {
    return got.filter(([d]) => d === id).map(([, text]) => text);
  }

  it('drops a QoS 0 flood over the rate while another client gets every message through, in order', async () => {
    const { t, got } = await setUp({ messagesPerSecond: 200, burstMessages: 100, bytesPerSecond: 10 * MiB, burstBytes: 10 * MiB, maxDelayMs: 10_000 });
    const flooder = await device(t.url, 'dev-flood');
    const steady = await device(t.url, 'dev-steady');
    const FLOOD = 5000;
    const STEADY = 50;

    const flood = async () => {
      for (let i = 0; i < FLOOD; i++) flooder.publish(deviceTopic('dev-flood', 'telemetry'), `f${i}`, { qos: 0 });
    };
    const trickle = async () => {
      for (let i = 0; i < STEADY; i++) {
        steady.publish(deviceTopic('dev-steady', 'telemetry'), `s${i}`, { qos: 0 });
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await Promise.all([flood(), trickle()]);

    await until('every steady message', () => from(got, 'dev-steady').length === STEADY);
    const dropped = () => t.broker.stats.clients['dev-flood']?.rateDropped ?? 0;
    await until('every flood message delivered or counted as dropped', () => from(got, 'dev-flood').length + dropped() === FLOOD);

    expect(from(got, 'dev-steady')).toEqual(Array.from({ length: STEADY }, (_, i) => `s${i}`));
    expect(t.broker.stats.clients['dev-steady']).toBeUndefined();
    const flooded = from(got, 'dev-flood');
    expect(dropped()).toBeGreaterThan(0);
    // At least the burst went through, in the order sent.
    expect(flooded.length).toBeGreaterThanOrEqual(100);
    const seqs = flooded.map((s) => Number(s.slice(1)));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(flooder.connected).toBe(true);
    expect(t.lines.filter((l) => l.msg === 'mqtt publish dropped: client over its publish rate' && l.clientId === 'dev-flood')).toHaveLength(1);
  });

  it('holds a QoS 1 flood back to the rate without losing any of it, while another client is not held back', async () => {
    const { t, got } = await setUp({ messagesPerSecond: 500, burstMessages: 50, bytesPerSecond: 10 * MiB, burstBytes: 10 * MiB, maxDelayMs: 30_000 });
    const flooder = await device(t.url, 'dev-flood');
    const steady = await device(t.url, 'dev-steady');
    const FLOOD = 1000;
    const STEADY = 20;

    const flood = Promise.all(Array.from({ length: FLOOD }, (_, i) => flooder.publishAsync(deviceTopic('dev-flood', 'telemetry'), `f${i}`, { qos: 1 })));
    for (let i = 0; i < STEADY; i++) await steady.publishAsync(deviceTopic('dev-steady', 'telemetry'), `s${i}`, { qos: 1 });
    await flood;

    await until('every message', () => got.length === FLOOD + STEADY);
    expect(from(got, 'dev-flood')).toEqual(Array.from({ length: FLOOD }, (_, i) => `f${i}`));
    expect(from(got, 'dev-steady')).toEqual(Array.from({ length: STEADY }, (_, i) => `s${i}`));
    const stats = t.broker.stats;
    expect(stats.clients['dev-flood']?.rateDelayed).toBeGreaterThan(0);
    expect(stats.clients['dev-flood']?.rateDropped).toBe(0);
    expect(stats.clients['dev-steady']).toBeUndefined();
    expect(flooder.connected).toBe(true);
  });

  it('disconnects a client too far over its rate, once, and keeps serving the others', async () => {
    const { t, got } = await setUp({ messagesPerSecond: 100, burstMessages: 10, bytesPerSecond: 10 * MiB, burstBytes: 10 * MiB, maxDelayMs: 200 });
    const flooder = await device(t.url, 'dev-flood');
    const steady = await device(t.url, 'dev-steady');
    const gone = new Promise<void>((resolve) => flooder.once('close', () => resolve()));
    for (let i = 0; i < 2000; i++) flooder.publish(deviceTopic('dev-flood', 'telemetry'), `f${i}`, { qos: 1 }, () => undefined);
    await gone;

    for (let i = 0; i < 5; i++) await steady.publishAsync(deviceTopic('dev-steady', 'telemetry'), `s${i}`, { qos: 1 });
    await until('the steady messages', () => from(got, 'dev-steady').length === 5);
    expect(from(got, 'dev-steady')).toEqual(['s0', 's1', 's2', 's3', 's4']);
    const stats = t.broker.stats;
    expect(stats.rateDisconnects).toBe(1);
    expect(stats.clients['dev-flood']?.rateDisconnects).toBe(1);
    expect(t.lines.filter((l) => l.msg === 'mqtt client disconnected: too far over its publish rate' && l.clientId === 'dev-flood')).toHaveLength(1);
    // What got through before the cut is a prefix of what was sent.
    const flooded = from(got, 'dev-flood');
    expect(flooded.length).toBeLessThan(2000);
    expect(flooded).toEqual(Array.from({ length: flooded.length }, (_, i) => `f${i}`));
  });
});
