import { deviceTopic } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { EmbeddedBroker } from './embedded-broker.js';

/*
 * A stopping control plane closes its devices' connections without their
 * wills (the devices did not go offline), while a lost link still sends
 * one. Thousands of links lost at once (a site's network going down) are
 * thousands of wills at once: the broker delivers them all and lives, and
 * stops in the middle of them without overflowing mqemitter's stack.
 */

const anyDevice = { authenticateDevice: (deviceId: string) => ({ ok: true as const, principal: { kind: 'device' as const, deviceId } }) };
let broker: EmbeddedBroker | null = null;
const clients: MqttClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.stop();
  broker = null;
});

async function connectDevice(url: string, id: string, retain = false): Promise<MqttClient> {
  const will = { topic: deviceTopic(id, 'status'), payload: Buffer.from('{"state":"offline"}'), qos: 1 as const, retain };
  const c = await mqtt.connectAsync(url, { clientId: id, username: id, password: 'x', reconnectPeriod: 0, will });
  clients.push(c);
  return c;
}

/** A started broker and the control plane's connection to it, subscribed to every device's status (where wills go). */
async function brokerWithControlPlane(cpOptions: { clean?: boolean } = {}): Promise<{ b: EmbeddedBroker; url: string; cp: MqttClient }> {
  const b = new EmbeddedBroker({ host: '127.0.0.1', port: 0, controlPlaneUsername: 'cp', controlPlanePassword: 'cp-secret', devices: anyDevice }, createLogger('silent'));
  broker = b;
  await b.start();
  const url = `mqtt://127.0.0.1:${b.port}`;
  const cp = await mqtt.connectAsync(url, { clientId: 'cp-1', username: 'cp', password: 'cp-secret', reconnectPeriod: 0, ...cpOptions });
  clients.push(cp);
  await cp.subscribeAsync('perch/v1/devices/+/status', { qos: 1 });
  return { b, url, cp };
}

/** `n` devices with retained wills, connected 500 at a time. */
async function connectFleet(url: string, prefix: string, n: number): Promise<MqttClient[]> {
  const devices: MqttClient[] = [];
  for (let i = 0; i < n; i += 500) devices.push(...(await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => connectDevice(url, `${prefix}-${i + k}`, true)))));
  return devices;
}

describe('embedded broker stopping', () => {
  it('disconnects 600 devices without publishing their wills; a device whose link is lost still gets its will out', async () => {
    const { b, url, cp } = await brokerWithControlPlane();
    const wills: string[] = [];
    cp.on('message', (topic) => wills.push(topic));

    // The will path works: a device whose socket is destroyed has its will delivered.
    const lost = await connectDevice(url, 'gw-lost');
    lost.stream.destroy();
    await expect.poll(() => wills, { timeout: 5000 }).toEqual([deviceTopic('gw-lost', 'status')]);

    const devices = await Promise.all(Array.from({ length: 600 }, (_, i) => connectDevice(url, `gw-${i}`)));
    const closed = Promise.all(devices.map((d) => new Promise<void>((resolve) => d.once('close', () => resolve()))));
    await b.disconnectDevices();
    await closed;
    expect(devices.every((d) => !d.connected)).toBe(true);
    // The control plane's own connection stays up, and heard no will of the 600.
    expect(cp.connected).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(wills).toEqual([deviceTopic('gw-lost', 'status')]);
  });

  it('survives thousands of devices losing their links at once, and delivers every will', async () => {
    const { url, cp } = await brokerWithControlPlane();
    let wills = 0;
    cp.on('message', () => wills++);
    const n = 4000;
    const devices = await connectFleet(url, 'site', n);
    // The control plane's connection reads slowly meanwhile: deliveries to it wait, and the wills queue in the broker.
    cp.stream.pause();
    for (const d of devices) d.stream.destroy();
    await new Promise((r) => setTimeout(r, 1000));
    cp.stream.resume();
    await expect.poll(() => wills, { timeout: 30_000 }).toBe(n);
    expect(cp.connected).toBe(true);
    // Still serving: a new device connects.
    await connectDevice(url, 'after');
  }, 60_000);

  it('stops while the retained wills of thousands of devices gone at once are still going through it, without a crash', async () => {
    const { b, url, cp } = await brokerWithControlPlane({ clean: false });
    cp.on('error', () => undefined);
    const devices = await connectFleet(url, 'gone', 8000);
    // Links dropped without DISCONNECT (their wills go out), then the control plane stops at once. With aedes's
    // default cap of 100 publishes in flight this overflowed mqemitter's stack: an uncaught RangeError, which
    // fails this test.
    await Promise.all(devices.map((d) => d.endAsync(true)));
    cp.end(true);
    broker = null;
    await b.stop();
    await new Promise((r) => setTimeout(r, 1000));
    await expect(mqtt.connectAsync(url, { clientId: 'late', username: 'late', password: 'x', reconnectPeriod: 0, connectTimeout: 2000 })).rejects.toThrow();
  }, 60_000);
});
