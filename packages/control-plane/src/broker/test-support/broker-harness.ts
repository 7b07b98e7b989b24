import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import type { DeviceAuthenticator } from '../broker-access.js';
import { EmbeddedBroker, type EmbeddedBrokerOptions } from '../embedded-broker.js';

/** The secret every device id has on a test broker. */
export const DEVICE_SECRET = 'device-secret-for-broker-tests';

/** Every well-formed device id is a device when it brings DEVICE_SECRET: the broker's limits, not who a device is, are under test. */
const anyDevice: DeviceAuthenticator = {
  authenticateDevice: (deviceId, secret) =>
    secret.toString('utf8') === DEVICE_SECRET ? { ok: true, principal: { kind: 'device', deviceId } } : { ok: false, reason: 'wrong secret' },
};

/** Log lines kept in memory, so a test can count what the broker said. */
export function capturedLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

export interface TestBroker {
  broker: EmbeddedBroker;
  /** mqtt://127.0.0.1:port */
  url: string;
  lines: Record<string, unknown>[];
  /** the control plane's own credentials */
  controlPlane: { username: string; password: string };
  stop(): Promise<void>;
}

/** A real embedded broker on a loopback port. */
export async function startTestBroker(opts: Pick<EmbeddedBrokerOptions, 'limits' | 'tls'> & { host?: string } = {}): Promise<TestBroker> {
  const { log, lines } = capturedLog();
  const controlPlane = { username: 'perch-control-plane', password: randomBytes(12).toString('hex') };
  const broker = new EmbeddedBroker(
    { host: opts.host ?? '127.0.0.1', port: 0, controlPlaneUsername: controlPlane.username, controlPlanePassword: controlPlane.password, devices: anyDevice, limits: opts.limits, tls: opts.tls },
    log,
  );
  await broker.start();
  return { broker, url: `mqtt://127.0.0.1:${broker.port}`, lines, controlPlane, stop: () => broker.stop() };
}

/** An mqtt.js client of device `deviceId`, connected. */
export function connectDevice(url: string, deviceId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId: deviceId, username: deviceId, password: DEVICE_SECRET, reconnectPeriod: 0, connectTimeout: 10_000, ...extra });
}

/** The control plane's own client (may subscribe to every device's topics), connected. */
export function connectControlPlane(t: TestBroker, clientId = `cp-${randomBytes(3).toString('hex')}`): Promise<MqttClient> {
  return mqtt.connectAsync(t.url, { clientId, ...t.controlPlane, reconnectPeriod: 0, connectTimeout: 10_000 });
}

/**
 * Waits until `check` returns something other than undefined/false. The
 * deadline only turns a hang into a readable failure; it asserts nothing
 * about speed.
 */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, deadlineMs = 30_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function utf8Field(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

/** A fixed header announcing `length` bytes of packet `type` (first byte), for packets a client library would never send. */
export function fixedHeader(firstByte: number, length: number): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(length)]);
}

/** MQTT 3.1.1 CONNECT with username and password, clean session, keepalive 0. */
export function connectPacket(clientId: string, username: string, password: string): Buffer {
  const variable = Buffer.concat([utf8Field('MQTT'), Buffer.from([4, 0xc2, 0, 0])]);
  const payload = Buffer.concat([utf8Field(clientId), utf8Field(username), utf8Field(password)]);
  return Buffer.concat([fixedHeader(0x10, variable.length + payload.length), variable, payload]);
}

/** SUBSCRIBE to one topic. */
export function subscribePacket(messageId: number, topic: string, qos: 0 | 1): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  const body = Buffer.concat([id, utf8Field(topic), Buffer.from([qos])]);
  return Buffer.concat([fixedHeader(0x82, body.length), body]);
}

/** A raw TCP connection to `port`, open. A reset by the broker only closes it: that is what a cut-off looks like. */
export function rawConnection(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port }, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves when `socket` is closed (by either side). */
export function closed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
