/**
 * The server side of the fleet benchmarks, in a process of its own so its
 * resident memory is its own and a crash is visible as an exit. Driven over
 * the IPC channel (fleet-server.ts is the other end). Two modes:
 *
 * - `control-plane`: a real ControlPlane (embedded aedes, SQLite, REST
 *   API) on loopback. Every committed telemetry batch is timed: commit
 *   time minus the window's `windowEnd` (set by the simulated device at
 *   publish, same machine clock) is publish-to-commit latency.
 * - `bare`: the baseline, aedes alone with no authentication, limits or
 *   hooks, and one subscriber (mqtt.js, QoS 1, the control plane's own
 *   filters) that only counts telemetry windows and times their arrival.
 */
import { createServer, type Server } from 'node:net';
import { getHeapSpaceStatistics } from 'node:v8';
import { ControlPlane, createLogger, loadControlPlaneConfig, type ControlPlaneConfigInput } from '@perch/control-plane';
import { allDevicesFilter, type DeviceTopicKind } from '@perch/shared';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { auditStore, type AuditResult } from './fleet-audit.js';
import { indexedRetainedPersistence } from '../../packages/control-plane/src/broker/indexed-retained-persistence.js';
import { windowEndOf } from './fleet-windows.js';
import { resident } from './proc-stats.js';

export type ServerMode = 'control-plane' | 'bare';

export type ServerCommand =
  /** `retainedIndex`: the bare aedes baseline with retained messages indexed by topic, as the control plane's broker has them */
  | { cmd: 'start'; mode: ServerMode; dataDir: string; port: number; config?: ControlPlaneConfigInput; logLevel?: string; retainedIndex?: boolean }
  | { cmd: 'provision'; ids: string[] }
  | { cmd: 'stats' }
  | { cmd: 'reset-latency' }
  | { cmd: 'audit'; deviceIds: string[]; validate: boolean }
  | { cmd: 'stop' };

export interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** the worst latency of each second since the reset, by the clock of arrival (ms): where in a round it went wrong */
  worstBySecond: number[];
}

export interface ServerStats {
  mode: ServerMode;
  rssBytes: number;
  anonBytes: number;
  heapUsedBytes: number;
  /** the main thread's V8 heap: bytes committed (resident or not) and used, all spaces together */
  heapCommittedBytes: number;
  /** new space committed: the young generation, sized by --max-semi-space-size */
  newSpaceCommittedBytes: number;
  connectedClients: number;
  /** telemetry windows: committed (control plane) or delivered to the subscriber (bare) */
  windows: number;
  /** the control plane's own counters (`ControlPlane.stats`); null for bare */
  controlPlane: Record<string, unknown> | null;
  /** log lines saying a device message was dropped */
  droppedLogLines: number;
  /** publish-to-commit (control plane) or publish-to-delivery (bare), since the last reset */
  latencyMs: LatencySummary;
  /** receive-to-commit inside the control plane, since the last reset */
  ingestLatencyMs: LatencySummary | null;
}

/** A growable list of latencies, summarised by sorting once. */
class LatencyLog {
  private values = new Float64Array(1 << 16);
  private n = 0;
  private since = Date.now();
  private worst: number[] = [];

  push(v: number): void {
    const second = Math.floor((Date.now() - this.since) / 1000);
    if (second < 3600 && v > (this.worst[second] ?? -Infinity)) this.worst[second] = v;
    if (this.n === this.values.length) {
      if (this.n >= 1 << 24) return;
      const next = new Float64Array(this.values.length * 2);
      next.set(this.values);
      this.values = next;
    }
    this.values[this.n++] = v;
  }

  reset(): void {
    this.n = 0;
    this.since = Date.now();
    this.worst = [];
  }

  summary(): LatencySummary {
    const s = this.values.slice(0, this.n).sort();
    const at = (p: number) => (this.n === 0 ? Number.NaN : (s[Math.min(this.n - 1, Math.max(0, Math.ceil((p / 100) * this.n) - 1))] as number));
    const worstBySecond = Array.from(this.worst, (v) => Math.round(v ?? 0));
    return { n: this.n, p50: at(50), p90: at(90), p99: at(99), max: this.n === 0 ? Number.NaN : (s[this.n - 1] as number), worstBySecond };
  }
}

const latency = new LatencyLog();
const ingestLatency = new LatencyLog();
let droppedLogLines = 0;
let mode: ServerMode = 'control-plane';
let cp: ControlPlane | null = null;
let bare: { broker: Aedes; server: Server; subscriber: MqttClient; delivered: number } | null = null;

/** Where the control plane's log goes: on to stdout (a file the benchmark chose), dropped-message lines counted on the way. */
const logDestination = {
  write(line: string): void {
    if (line.includes('"msg":"dropped device message"')) droppedLogLines++;
    process.stdout.write(line);
  },
};

async function start(c: Extract<ServerCommand, { cmd: 'start' }>): Promise<Record<string, unknown>> {
  mode = c.mode;
  if (c.retainedIndex) {
    // Every aedes this process makes (the control plane's embedded one too) gets the indexed persistence.
    const create = Aedes.createBroker.bind(Aedes);
    (Aedes as unknown as { createBroker: typeof create }).createBroker = (opts) => create({ ...opts, persistence: indexedRetainedPersistence() as never });
  }
  if (c.mode === 'bare') {
    const broker = await Aedes.createBroker();
    const server = createServer({ noDelay: true }, (conn) => broker.handle(conn));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(c.port, '127.0.0.1', () => resolve());
    });
    const port = (server.address() as { port: number }).port;
    const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'bare-counter', clean: true, reconnectPeriod: 1000 });
    (subscriber.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const b = { broker, server, subscriber, delivered: 0 };
    subscriber.on('message', (topic, payload) => {
      if (!topic.endsWith('/telemetry')) return;
      b.delivered++;
      const end = windowEndOf(payload);
      if (end !== null) latency.push(Date.now() - end);
    });
    // The control plane's bus subscribes every device-to-cloud kind it handles: the same here.
    const kinds: DeviceTopicKind[] = ['status', 'reported', 'telemetry', 'events', 'artifact/request', 'metadata/request', 'provision/request'];
    await subscriber.subscribeAsync(kinds.map(allDevicesFilter), { qos: 1 });
    bare = b;
    return { mqttPort: port };
  }
  const config = loadControlPlaneConfig({
    env: {},
    overrides: {
      ...c.config,
      dataDir: c.dataDir,
      mqtt: { ...c.config?.mqtt, host: '127.0.0.1', port: c.port },
      http: { ...c.config?.http, host: '127.0.0.1', port: 0 },
      log: { level: (c.logLevel ?? 'warn') as 'warn' },
    },
  });
  const next = new ControlPlane(config, createLogger(c.logLevel ?? 'warn', 'perch-control-plane', logDestination));
  await next.start();
  next.services.fleet.ingest.onBatch((batch, _result, committedAt) => {
    for (const p of batch) {
      const end = windowEndOf(p.payload);
      if (end !== null) latency.push(committedAt - end);
      ingestLatency.push(committedAt - p.receivedAt);
    }
  });
  cp = next;
  return { mqttPort: next.mqttPort, httpPort: next.httpPort, claimToken: next.claimToken, adminToken: next.adminToken };
}

function stats(): ServerStats {
  const mem = resident(process.pid);
  const spaces = getHeapSpaceStatistics();
  const heapCommittedBytes = spaces.reduce((sum, s) => sum + s.physical_space_size, 0);
  const newSpaceCommittedBytes = spaces.find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
  const common = { mode, rssBytes: mem.rss, anonBytes: mem.anon, heapUsedBytes: process.memoryUsage().heapUsed, heapCommittedBytes, newSpaceCommittedBytes, droppedLogLines, latencyMs: latency.summary() };
  if (mode === 'bare') {
    return { ...common, connectedClients: bare?.broker.connectedClients ?? 0, windows: bare?.delivered ?? 0, controlPlane: null, ingestLatencyMs: null };
  }
  const s = cp?.stats;
  return {
    ...common,
    connectedClients: s?.mqttClients ?? 0,
    windows: s?.telemetry.inserted ?? 0,
    controlPlane: s ? (JSON.parse(JSON.stringify(s)) as Record<string, unknown>) : null,
    ingestLatencyMs: ingestLatency.summary(),
  };
}

/** Row counts; with `validate`, every stored payload checked against its schema (slow on a big table). */
async function audit(deviceIds: string[], validate: boolean): Promise<AuditResult> {
  if (!cp) throw new Error('no control plane');
  await cp.services.fleet.ingest.flush();
  return auditStore(cp.db, deviceIds, validate);
}

async function stop(): Promise<void> {
  if (cp) await cp.stop();
  cp = null;
  if (bare) {
    const b = bare;
    bare = null;
    await b.subscriber.endAsync(true);
    await new Promise<void>((resolve) => b.broker.close(() => resolve()));
    await new Promise<void>((resolve) => b.server.close(() => resolve()));
  }
}

async function handle(c: ServerCommand): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case 'start':
      return start(c);
    case 'provision': {
      if (!cp) throw new Error('no control plane');
      const r = cp;
      return { passwords: await Promise.all(c.ids.map(async (id) => (await r.issueDeviceCredentials(id)).password)) };
    }
    case 'stats':
      return { stats: stats() };
    case 'reset-latency':
      latency.reset();
      ingestLatency.reset();
      return {};
    case 'audit':
      return { audit: await audit(c.deviceIds, c.validate) };
    case 'stop': {
      const t0 = performance.now();
      await stop();
      return { stopMs: performance.now() - t0 };
    }
  }
}

process.on('message', (msg: { id: number } & ServerCommand) => {
  handle(msg).then(
    (result) => {
      process.send?.({ id: msg.id, ok: true, ...result });
      if (msg.cmd === 'stop') setImmediate(() => process.exit(0));
    },
    (err: unknown) => process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => {
  void stop().finally(() => process.exit(0));
});
