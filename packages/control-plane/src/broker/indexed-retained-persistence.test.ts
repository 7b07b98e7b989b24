import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { EmbeddedBroker } from './embedded-broker.js';

/*
 * The broker's retained messages, indexed by topic: what a subscriber gets
 * must be what aedes's own scan would give, for exact topics and wildcards,
 * replaced and cleared retained messages included.
 */

const noDevices = { authenticateDevice: () => ({ ok: false as const, reason: 'control plane only in this test' }) };
let broker: EmbeddedBroker;
let url: string;
const password = randomBytes(12).toString('hex');

async function client(id: string) {
  return mqtt.connectAsync(url, { clientId: id, username: 'cp', password, reconnectPeriod: 0 });
}

/** Retained messages a fresh subscriber to `filter` receives, by topic. */
async function retainedFor(filter: string): Promise<Record<string, string>> {
  const c = await client(`reader-${randomBytes(3).toString('hex')}`);
  const got: Record<string, string> = {};
  c.on('message', (topic, payload, packet) => {
    if (packet.retain) got[topic] = payload.toString();
  });
  await c.subscribeAsync(filter, { qos: 1 });
  // A round trip after the SUBACK: retained messages are sent before it completes.
  await c.publishAsync('perch/v1/probe', 'x', { qos: 1 });
  await c.endAsync();
  return got;
}

beforeAll(async () => {
  broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, controlPlaneUsername: 'cp', controlPlanePassword: password, devices: noDevices }, createLogger('silent'));
  await broker.start();
  url = `mqtt://127.0.0.1:${broker.port}`;
  const w = await client('writer');
  for (const id of ['a', 'b', 'c']) await w.publishAsync(`perch/v1/devices/${id}/desired`, `d-${id}`, { qos: 1, retain: true });
  await w.publishAsync('perch/v1/devices/a/desired', 'd-a2', { qos: 1, retain: true });
  await w.publishAsync('perch/v1/devices/c/desired', '', { qos: 1, retain: true });
  await w.endAsync();
});

afterAll(async () => {
  await broker.stop();
});

describe('indexed retained messages', () => {
  it('an exact topic gets its latest retained message, a cleared or unknown one none', async () => {
    expect(await retainedFor('perch/v1/devices/a/desired')).toEqual({ 'perch/v1/devices/a/desired': 'd-a2' });
    expect(await retainedFor('perch/v1/devices/c/desired')).toEqual({});
    expect(await retainedFor('perch/v1/devices/zz/desired')).toEqual({});
  });

  it('a wildcard gets every retained message it matches', async () => {
    expect(await retainedFor('perch/v1/devices/+/desired')).toEqual({ 'perch/v1/devices/a/desired': 'd-a2', 'perch/v1/devices/b/desired': 'd-b' });
    expect(await retainedFor('perch/v1/#')).toEqual({ 'perch/v1/devices/a/desired': 'd-a2', 'perch/v1/devices/b/desired': 'd-b' });
  });
});
