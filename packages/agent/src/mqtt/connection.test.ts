import { deviceTopic, type DeviceStatus } from '@perch/shared';
import type { Client } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceObserver } from '../test-support/device-observer.js';
import { CapturedLog, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { MqttConnection, type ConnectionOptions } from './connection.js';
import { MessageDispatcher } from './dispatcher.js';

const deviceId = 'conn-1';
const password = 'pw';
const credentials = { [deviceId]: password, [`observer-${deviceId}`]: 'obs' };

function options(url: string, over: Partial<ConnectionOptions> = {}): ConnectionOptions {
  return { deviceId, url, username: deviceId, password, connectTimeoutMs: 5000, keepaliveSeconds: 30, reconnect: { minMs: 20, maxMs: 200 }, ...over };
}

describe('mqtt connection (real broker)', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c();
    cleanup.length = 0;
  });

  async function setup(): Promise<{ broker: TestBroker; observer: DeviceObserver; clients: Map<string, Client> }> {
    const broker = await startBroker({ credentials });
    const clients = new Map<string, Client>();
    broker.broker.on('client', (c) => clients.set(c.id, c));
    const observer = new DeviceObserver(broker.url, deviceId, { username: `observer-${deviceId}`, password: 'obs' });
    await observer.start();
    cleanup.push(() => broker.close(), () => observer.stop());
    return { broker, observer, clients };
  }

  const statuses = (o: DeviceObserver) => o.status.map((s: DeviceStatus) => `${s.state}${s.reason ? `:${s.reason}` : ''}`);

  it('announces online, leaves a will that fires when the link dies, reconnects, and says goodbye on stop', async () => {
    const { broker, observer, clients } = await setup();
    const log = new CapturedLog();
    const conn = new MqttConnection(options(broker.url), log.logger);
    let connects = 0;
    conn.on('connect', () => connects++);
    conn.start();
    cleanup.push(() => conn.stop());
    await waitFor('online', () => statuses(observer).includes('online'));
    expect(observer.status[0]).toMatchObject({ deviceId, state: 'online' });

    // Cut the device's socket without a DISCONNECT: the broker publishes the will.
    clients.get(deviceId)?.conn.destroy();
    await waitFor('will', () => statuses(observer).includes('offline:connection-lost'));
    await waitFor('reconnected', () => connects >= 2 && statuses(observer).filter((s) => s === 'online').length >= 2);
    expect(log.find((l) => l.msg === 'mqtt disconnected; reconnecting')).toBeDefined();

    await conn.stop();
    await waitFor('goodbye', () => statuses(observer).at(-1) === 'offline:shutdown');
  });

  it('comes back after the broker restarts on the same port', async () => {
    const first = await startBroker({ credentials });
    const conn = new MqttConnection(options(first.url), new CapturedLog().logger);
    let connects = 0;
    conn.on('connect', () => connects++);
    conn.start();
    await waitFor('connected', () => connects === 1);
    await first.close();
    await waitFor('disconnected', () => !conn.connected);
    const second = await startBroker({ credentials, port: first.port });
    cleanup.push(() => second.close(), () => conn.stop());
    await waitFor('reconnected', () => connects === 2 && conn.connected);
    await conn.publish('telemetry', Buffer.from('{}'), { qos: 1 });
  });

  it('logs refused credentials and keeps retrying with backoff', async () => {
    const { broker } = await setup();
    const log = new CapturedLog();
    const conn = new MqttConnection(options(broker.url, { password: 'wrong' }), log.logger);
    conn.start();
    cleanup.push(() => conn.stop());
    await waitFor('two refusals', () => log.lines.filter((l) => l.msg === 'mqtt connection error').length >= 2);
    expect(String(log.find((l) => l.msg === 'mqtt connection error')?.err)).toMatch(/Bad username or password|Not authorized/);
    expect(conn.connected).toBe(false);
  });

  it('dispatcher: drops what is not its own to-device topic, and survives a throwing handler', async () => {
    const { broker } = await setup();
    const log = new CapturedLog();
    const conn = new MqttConnection(options(broker.url), log.logger);
    const dispatcher = new MessageDispatcher(conn, log.logger);
    const seen: string[] = [];
    dispatcher.register<string>({
      kind: 'desired',
      decode: (p) => (p.toString() === 'bad' ? { ok: false, error: 'not good' } : { ok: true, value: p.toString() }),
      handle: (v) => {
        if (v === 'boom') throw new Error('handler exploded');
        seen.push(v);
      },
    });
    await dispatcher.dispatch(deviceTopic('someone-else', 'desired'), Buffer.from('x'));
    await dispatcher.dispatch(deviceTopic(deviceId, 'reported'), Buffer.from('x'));
    await dispatcher.dispatch('elsewhere/topic', Buffer.from('x'));
    await dispatcher.dispatch(deviceTopic(deviceId, 'desired'), Buffer.from('bad'));
    await dispatcher.dispatch(deviceTopic(deviceId, 'desired'), Buffer.from('boom'));
    await dispatcher.dispatch(deviceTopic(deviceId, 'desired'), Buffer.alloc(0));
    await dispatcher.dispatch(deviceTopic(deviceId, 'desired'), Buffer.from('fine'));
    expect(seen).toEqual(['fine']);
    const msgs = log.messages();
    expect(msgs.filter((m) => m === 'message on a topic this device does not handle; dropped')).toHaveLength(3);
    expect(log.find((l) => l.msg === 'invalid payload; dropped')?.reason).toBe('not good');
    expect(log.find((l) => l.msg === 'handler failed')?.err).toBe('handler exploded');
    expect(msgs).toContain('empty payload; dropped');
  });
});
