/**
 * Sends a fuzz campaign (payload-fuzzer.ts) through a real broker from real
 * device connections: each device connection (its own credentials) sends
 * every device-to-cloud kind on its own topics, a claimant connection (the
 * claim token) sends `provision/request`, all at QoS 1 so every payload
 * reaches the broker, paced under the broker's per-client publish rate so
 * none is held back or cut for its rate. A cutter connection then sends
 * packets over the broker's socket-level cap, each of which must close its
 * connection, and connects again. Returns what was sent and what the
 * contract says the control plane must have done with it.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { deviceTopic } from '@perch/shared';
import type { MaxPayloadBytes } from '../../packages/control-plane/src/broker/payload-limits.js';
import { DEFAULT_PUBLISH_RATE } from '../../packages/control-plane/src/broker/publish-rate-limiter.js';
import { FUZZ_KINDS, MUTATIONS, PayloadFuzzer, zeroOutcomes, type FuzzCase, type FuzzKind, type Mutation, type OutcomeCounts } from './payload-fuzzer.js';

export interface FuzzCredentials {
  deviceId: string;
  password: string;
  /** the MQTT username when it is not the device id (a claimant's, from its claim token) */
  username?: string;
}

export interface FuzzRunOptions {
  url: string;
  /** device connections, each with its own credentials */
  devices: readonly FuzzCredentials[];
  /** a claimant: device id, the claim token as password and `claimantUsername(token)`; without one provision/request is not fuzzed */
  claimant?: FuzzCredentials | null;
  /** a device connection for packets over the socket-level cap */
  cutter?: FuzzCredentials | null;
  total: number;
  seed: number;
  limits?: MaxPayloadBytes;
  /** the broker's largest packet; `cuts` packets above it are sent by the cutter */
  maxPacketBytes?: number;
  cuts?: number;
  /** per connection; default 80 % of the broker's default publish rate */
  rate?: { messagesPerSecond: number; bytesPerSecond: number };
  maxInFlight?: number;
  onProgress?: (sent: number) => void;
}

export interface FuzzRunResult {
  sent: number;
  bytes: number;
  acked: number;
  /** publishes whose callback reported an error */
  publishErrors: number;
  /** device or claimant connections that closed while fuzzing (none should) */
  unexpectedCloses: number;
  expected: OutcomeCounts;
  byKind: Record<FuzzKind, OutcomeCounts & { sent: number }>;
  byMutation: Record<Mutation, OutcomeCounts & { sent: number }>;
  /** `${deviceId}/${seq}` of the telemetry windows and events that must be stored */
  telemetryKeys: Set<string>;
  eventKeys: Set<string>;
  cuts: { sent: number; closed: number; reconnected: boolean };
  wallMs: number;
}

function tallies<K extends string>(keys: readonly K[]): Record<K, OutcomeCounts & { sent: number }> {
  return Object.fromEntries(keys.map((k) => [k, { sent: 0, ...zeroOutcomes() }])) as Record<K, OutcomeCounts & { sent: number }>;
}

export async function runFuzz(opts: FuzzRunOptions): Promise<FuzzRunResult> {
  const started = performance.now();
  const result: FuzzRunResult = {
    sent: 0,
    bytes: 0,
    acked: 0,
    publishErrors: 0,
    unexpectedCloses: 0,
    expected: zeroOutcomes(),
    byKind: tallies(FUZZ_KINDS),
    byMutation: tallies(MUTATIONS),
    telemetryKeys: new Set(),
    eventKeys: new Set(),
    cuts: { sent: 0, closed: 0, reconnected: false },
    wallMs: 0,
  };
  const deviceKinds = FUZZ_KINDS.filter((k) => k !== 'provision/request');
  const claimantShare = opts.claimant ? Math.round(opts.total / FUZZ_KINDS.length) : 0;
  const perDevice = Math.ceil((opts.total - claimantShare) / opts.devices.length);
  const jobs: { creds: FuzzCredentials; fuzzer: PayloadFuzzer; count: number }[] = opts.devices.map((creds, i) => ({
    creds,
    fuzzer: new PayloadFuzzer({ seed: opts.seed * 1000 + i, deviceId: creds.deviceId, kinds: deviceKinds, ...(opts.limits ? { limits: opts.limits } : {}) }),
    count: Math.max(0, Math.min(perDevice, opts.total - claimantShare - i * perDevice)),
  }));
  if (opts.claimant) {
    jobs.push({
      creds: opts.claimant,
      fuzzer: new PayloadFuzzer({ seed: opts.seed * 1000 + 999, deviceId: opts.claimant.deviceId, kinds: ['provision/request'], claimToken: opts.claimant.password, ...(opts.limits ? { limits: opts.limits } : {}) }),
      count: claimantShare,
    });
  }
  const tally = (c: FuzzCase): void => {
    result.sent++;
    result.bytes += c.payload.length;
    result.expected[c.expected]++;
    const k = result.byKind[c.kind];
    k.sent++;
    k[c.expected]++;
    const m = result.byMutation[c.mutation];
    m.sent++;
    m[c.expected]++;
    if (c.key !== undefined) (c.kind === 'telemetry' ? result.telemetryKeys : result.eventKeys).add(c.key);
    if (result.sent % 5000 === 0) opts.onProgress?.(result.sent);
  };
  await Promise.all(jobs.map((job) => pump(opts, job.creds, job.fuzzer, job.count, tally, result)));
  if (opts.cutter && (opts.cuts ?? 0) > 0 && opts.maxPacketBytes !== undefined) await cut(opts, opts.cutter, opts.maxPacketBytes, opts.cuts ?? 0, result);
  result.wallMs = performance.now() - started;
  return result;
}

async function connect(url: string, creds: FuzzCredentials): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId: creds.deviceId, username: creds.username ?? creds.deviceId, password: creds.password, clean: true, reconnectPeriod: 0, keepalive: 60, connectTimeout: 20_000 }, false);
  (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  return client;
}

/** One connection's share: published in order, at most `maxInFlight` unacknowledged, paced under the broker's rate. */
async function pump(opts: FuzzRunOptions, creds: FuzzCredentials, fuzzer: PayloadFuzzer, count: number, tally: (c: FuzzCase) => void, result: FuzzRunResult): Promise<void> {
  if (count === 0) return;
  const client = await connect(opts.url, creds);
  let ending = false;
  let closed = false;
  let wake: (() => void) | null = null;
  client.on('close', () => {
    closed = true;
    if (!ending) result.unexpectedCloses++;
    const w = wake;
    wake = null;
    w?.();
  });
  client.on('error', () => undefined);
  const rate = opts.rate ?? { messagesPerSecond: DEFAULT_PUBLISH_RATE.messagesPerSecond * 0.8, bytesPerSecond: DEFAULT_PUBLISH_RATE.bytesPerSecond * 0.8 };
  const maxInFlight = opts.maxInFlight ?? 32;
  let inFlight = 0;
  let nextAt = performance.now();
  for (let i = 0; i < count && !closed; i++) {
    const c = fuzzer.next();
    tally(c);
    while (inFlight >= maxInFlight && !closed) await new Promise<void>((resolve) => (wake = resolve));
    const wait = nextAt - performance.now();
    if (wait > 20) await new Promise((resolve) => setTimeout(resolve, wait));
    nextAt = Math.max(nextAt, performance.now() - 200) + Math.max(1000 / rate.messagesPerSecond, (1000 * c.payload.length) / rate.bytesPerSecond);
    inFlight++;
    client.publish(deviceTopic(c.deviceId, c.kind), c.payload, { qos: 1 }, (err) => {
      inFlight--;
      if (err) result.publishErrors++;
      else result.acked++;
      const w = wake;
      wake = null;
      w?.();
    });
  }
  while (inFlight > 0 && !closed) await new Promise<void>((resolve) => (wake = resolve));
  ending = true;
  await client.endAsync().catch(() => undefined);
}

/** Packets over the socket-level cap: each must close its connection; the device can connect again afterwards. */
async function cut(opts: FuzzRunOptions, creds: FuzzCredentials, maxPacketBytes: number, cuts: number, result: FuzzRunResult): Promise<void> {
  for (let k = 0; k < cuts; k++) {
    const client = await connect(opts.url, creds);
    const closed = new Promise<boolean>((resolve) => {
      client.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 10_000).unref();
    });
    client.on('error', () => undefined);
    client.publish(deviceTopic(creds.deviceId, 'telemetry'), Buffer.alloc(maxPacketBytes + 1024 + k, 0x7b), { qos: 0 });
    result.cuts.sent++;
    if (await closed) result.cuts.closed++;
    await client.endAsync(true).catch(() => undefined);
  }
  const again = await connect(opts.url, creds).catch(() => null);
  result.cuts.reconnected = again !== null;
  await again?.endAsync().catch(() => undefined);
}
