/**
 * A simulated fleet: many lightweight devices, each a real mqtt.js
 * connection that speaks the device side of the contract in @perch/shared
 * the way the agent does, without cameras, models or disks:
 *
 * - connects as its own device (client id = username = device id) with its
 *   own password, or first claims one with a claim token over
 *   `provision/request` / `provision/response` as the agent does (the
 *   claimant's username from the token, the answer sealed to a key made for
 *   the claim); an `offline` will; `online`
 *   status and its reported state on every connect; reconnects with the
 *   agent's jittered backoff (full jitter, doubling window);
 * - subscribes its `desired` topic, parses each desired state with the
 *   shared schema and reports a reported state; what it reports (active,
 *   failed, rolled back, rejected, after how long) is a pluggable policy,
 *   so rollout tests can make a share of the fleet fail;
 * - publishes telemetry windows at QoS 1 on an interval, numbered by a
 *   monotonic seq, through a small outbox: a window not acknowledged when
 *   the link drops is sent again after the reconnect, windows closed while
 *   offline wait their turn, so the control plane sees every seq;
 * - optionally asks for artifact chunks on `artifact/request` to load the
 *   chunk server, and checks each frame's hash.
 *
 * One scheduler (fleet-scheduler.ts) drives every device's connects,
 * windows, chunk requests and delayed reports: no timer per device (mqtt.js
 * keeps its own keepalive timer per connection).
 */
import { createHash } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import {
  claimantUsername,
  decodeChunkFrame,
  decodeJson,
  deviceTopic,
  modelRefOf,
  openSecret,
  provisionResponseSchema,
  provisionSealingContext,
  sealingKeyPair,
  signedDesiredStateSchema,
  type DeploymentPhase,
  type DesiredState,
  type ModelRef,
  type ProvisionRequest,
  type ReportedState,
} from '@perch/shared';
import { JitteredBackoff } from '../../packages/agent/src/backoff/jittered-backoff.js';
import { FleetScheduler } from './fleet-scheduler.js';
import { DEFAULT_WINDOW_SHAPE, FLEET_MODEL, TelemetryWindowFactory, type WindowShape } from './fleet-windows.js';

export interface SimulatedDevice {
  deviceId: string;
  /** its own MQTT password; without one it claims one with the fleet's claim token */
  password?: string | undefined;
}

export interface TelemetryLoad {
  /** one window per device every this many ms */
  intervalMs: number;
  shape?: WindowShape;
  /** windows sent and not yet acknowledged, per device (default 4) */
  maxInFlight?: number;
}

export interface ArtifactLoad {
  sha256: string;
  length: number;
  /** bytes per request */
  chunkBytes: number;
  /** one request per device every this many ms */
  intervalMs: number;
}

/** What a device runs and has accepted when a desired state arrives. */
export interface DesiredContext {
  deviceId: string;
  index: number;
  active: ModelRef | null;
  acceptedGeneration: number;
}

/** Terminal phases a simulated device reports for a desired state. */
export type DesiredOutcome = Extract<DeploymentPhase, 'active' | 'failed' | 'rolled-back' | 'rejected'>;

export interface DesiredDecision {
  phase: DesiredOutcome;
  reason?: string;
  /** report after this long (ms), as a device that downloads and checks the model first; 0 reports at once */
  afterMs?: number;
}

/** Decides what a device reports for a desired state; null reports nothing. */
export type DesiredStatePolicy = (device: DesiredContext, desired: DesiredState) => DesiredDecision | null;

/** Every device runs what it is told. */
export const reportActive: DesiredStatePolicy = () => ({ phase: 'active' });

export interface FleetSimulatorOptions {
  url: string;
  devices: readonly SimulatedDevice[];
  /** used by devices without a password */
  claimToken?: string | null;
  /** connections opened per second while ramping up (default 200) */
  connectRatePerSecond?: number;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
  /** the agent's defaults: 500 ms doubling to 30 s */
  reconnect?: { minMs: number; maxMs: number };
  telemetry?: TelemetryLoad | null;
  artifact?: ArtifactLoad | null;
  onDesired?: DesiredStatePolicy;
  agentVersion?: string;
  /** first seq of every device (default 0): a simulator started again over the same ids starts above the last run's */
  firstSeq?: number;
  /** windows kept per device while unacknowledged; the oldest beyond are dropped and counted (default 1000) */
  maxOutbox?: number;
  seed?: number;
}

export interface FleetStats {
  devices: number;
  /** devices powered on (ramp) */
  started: number;
  connected: number;
  /** devices connected at least once */
  everConnected: number;
  /** successful CONNACKs, first connects and reconnects */
  connects: number;
  reconnects: number;
  disconnects: number;
  /** CONNACKs that refused the connection (bad credentials, not authorised) */
  connackFailures: number;
  /** CONNACK 3, server unavailable: a control plane starting up says "come back", and the device retries */
  serverUnavailable: number;
  /** connection attempts that failed below MQTT (refused, reset, timed out) */
  connectErrors: number;
  /** the first few distinct messages of those failures (and of refused CONNACKs), with counts */
  errorKinds: Record<string, number>;
  subscribeRefused: number;
  claims: number;
  claimRefused: number;
  claimErrors: number;
  windowsProduced: number;
  windowsSent: number;
  /** windows sent again after a reconnect */
  windowsResent: number;
  windowsAcked: number;
  windowsDropped: number;
  /** produced and not yet acknowledged */
  outboxPending: number;
  desiredReceived: number;
  desiredInvalid: number;
  /** a desired state of a generation already handled (the retained copy after a reconnect) */
  desiredRepeated: number;
  reportedPublished: number;
  reportedAcked: number;
  chunkRequests: number;
  chunkFrames: number;
  chunkBytes: number;
  /** error answers or frames that do not decode */
  chunkErrors: number;
  /** frames whose data does not hash to the header's chunkSha256 */
  chunkBad: number;
  /** how late the scheduler ran work (ms) since the last stats: the simulator's own lag */
  schedulerLagMaxMs: number;
  schedulerLagMeanMs: number;
}

export interface DeviceProgress {
  deviceId: string;
  connected: boolean;
  firstSeq: number;
  /** the next seq it will number: windows firstSeq .. nextSeq - 1 exist */
  nextSeq: number;
  acked: number;
  acceptedGeneration: number;
  /** the generation it last reported on, and how */
  reported: { generation: number; phase: DeploymentPhase } | null;
}

const CONNECT = 0;
const WINDOW = 1;
const CHUNK = 2;
const REPORT = 3;

const PHI = 0.6180339887498949;

interface Deployment {
  phase: DeploymentPhase;
  generation: number;
  target: ModelRef | null;
  reason?: string;
  at: number;
}

class SimDevice {
  client: MqttClient | null = null;
  /** bumped for every client: callbacks of an older one are ignored */
  epoch = 0;
  connected = false;
  everConnected = false;
  started = false;
  password: string | null;
  readonly backoff: JitteredBackoff;
  nextSeq: number;
  acked = 0;
  /** [seq, windowEnd] pairs not yet sent */
  queue: number[] = [];
  /** [seq, windowEnd] pairs sent, waiting for their PUBACK */
  inflight: number[] = [];
  sentHigh = -1;
  telemetryToken = 0;
  active: ModelRef | null = FLEET_MODEL;
  acceptedGeneration = 0;
  handledGeneration = 0;
  deployment: Deployment | null = null;
  pending: { desired: DesiredState; decision: DesiredDecision } | null = null;
  reportToken = 0;
  requests = 0;

  constructor(
    readonly index: number,
    readonly deviceId: string,
    password: string | undefined,
    firstSeq: number,
    reconnect: { minMs: number; maxMs: number },
  ) {
    this.password = password ?? null;
    this.nextSeq = firstSeq;
    this.backoff = new JitteredBackoff(reconnect.minMs, reconnect.maxMs);
  }
}

function zeroStats(devices: number): FleetStats {
  return {
    devices,
    started: 0,
    connected: 0,
    everConnected: 0,
    connects: 0,
    reconnects: 0,
    disconnects: 0,
    connackFailures: 0,
    serverUnavailable: 0,
    connectErrors: 0,
    errorKinds: {},
    subscribeRefused: 0,
    claims: 0,
    claimRefused: 0,
    claimErrors: 0,
    windowsProduced: 0,
    windowsSent: 0,
    windowsResent: 0,
    windowsAcked: 0,
    windowsDropped: 0,
    outboxPending: 0,
    desiredReceived: 0,
    desiredInvalid: 0,
    desiredRepeated: 0,
    reportedPublished: 0,
    reportedAcked: 0,
    chunkRequests: 0,
    chunkFrames: 0,
    chunkBytes: 0,
    chunkErrors: 0,
    chunkBad: 0,
    schedulerLagMaxMs: 0,
    schedulerLagMeanMs: 0,
  };
}

export class FleetSimulator {
  private readonly devices: SimDevice[];
  private readonly scheduler: FleetScheduler;
  private readonly counters: FleetStats;
  private telemetry: TelemetryLoad | null;
  private windows: TelemetryWindowFactory | null = null;
  private readonly artifact: ArtifactLoad | null;
  private readonly policy: DesiredStatePolicy;
  private readonly agentVersion: string;
  private readonly rate: number;
  private readonly maxOutbox: number;
  private readonly firstSeq: number;
  private rampAt = 0;
  private stopping = false;

  constructor(private readonly opts: FleetSimulatorOptions) {
    const reconnect = opts.reconnect ?? { minMs: 500, maxMs: 30_000 };
    this.firstSeq = opts.firstSeq ?? 0;
    this.devices = opts.devices.map((d, i) => new SimDevice(i, d.deviceId, d.password, this.firstSeq, reconnect));
    this.counters = zeroStats(this.devices.length);
    this.scheduler = new FleetScheduler((device, action, token) => this.run(device, action, token));
    this.telemetry = opts.telemetry ?? null;
    this.artifact = opts.artifact ?? null;
    this.policy = opts.onDesired ?? reportActive;
    this.agentVersion = opts.agentVersion ?? 'fleet-sim';
    this.rate = opts.connectRatePerSecond ?? 200;
    this.maxOutbox = opts.maxOutbox ?? 1000;
    if (this.telemetry) this.windows = this.windowFactory(this.telemetry);
    if (this.devices.some((d) => d.password === null) && !opts.claimToken) throw new Error('devices without a password need a claim token');
  }

  get size(): number {
    return this.devices.length;
  }

  /** Powers devices on, up to `count` in all (default: every device), at the connect rate. */
  start(count = this.devices.length): void {
    const now = Date.now();
    this.rampAt = Math.max(this.rampAt, now);
    const step = 1000 / this.rate;
    for (let i = 0; i < Math.min(count, this.devices.length); i++) {
      const d = this.devices[i] as SimDevice;
      if (d.started) continue;
      d.started = true;
      this.counters.started++;
      this.scheduler.schedule(this.rampAt, i, CONNECT);
      this.rampAt += step;
      this.startLoads(d, this.rampAt);
    }
  }

  /** Changes the telemetry load of every started device; null stops producing windows (those in the outbox still go). */
  setTelemetry(load: TelemetryLoad | null): void {
    this.telemetry = load;
    // The last factory stays for windows still in the outboxes.
    if (load) this.windows = this.windowFactory(load);
    const now = Date.now();
    for (const d of this.devices) {
      d.telemetryToken++;
      if (d.started && load) this.scheduler.schedule(now + this.phase(d.index) * load.intervalMs, d.index, WINDOW, d.telemetryToken);
    }
  }

  stats(): FleetStats {
    const lag = this.scheduler.takeLag();
    const c = this.counters;
    return { ...c, errorKinds: { ...c.errorKinds }, outboxPending: c.windowsProduced - c.windowsAcked - c.windowsDropped, schedulerLagMaxMs: lag.maxMs, schedulerLagMeanMs: lag.meanMs };
  }

  progress(): DeviceProgress[] {
    return this.devices.map((d) => ({
      deviceId: d.deviceId,
      connected: d.connected,
      firstSeq: this.firstSeq,
      nextSeq: d.nextSeq,
      acked: d.acked,
      acceptedGeneration: d.acceptedGeneration,
      reported: d.deployment ? { generation: d.deployment.generation, phase: d.deployment.phase } : null,
    }));
  }

  /** Resolves when at least `count` devices are connected at once. */
  async waitConnected(count: number, timeoutMs = 60_000): Promise<void> {
    await this.until(() => this.counters.connected >= count, `${count} devices connected (${this.counters.connected} are)`, timeoutMs);
  }

  /** Resolves when every window produced so far has been acknowledged (call after `setTelemetry(null)`). */
  async drained(timeoutMs = 60_000): Promise<void> {
    const c = this.counters;
    await this.until(() => c.windowsProduced - c.windowsAcked - c.windowsDropped === 0, `the outboxes to drain (${c.windowsProduced - c.windowsAcked - c.windowsDropped} windows pending)`, timeoutMs);
  }

  /** Disconnects every device; `graceful` says goodbye (`offline`, no will), otherwise the sockets are cut. */
  async stop(opts: { graceful?: boolean } = {}): Promise<void> {
    this.stopping = true;
    this.scheduler.stop();
    await Promise.all(
      this.devices.map(async (d) => {
        const client = d.client;
        d.client = null;
        d.connected = false;
        d.epoch++;
        if (!client) return;
        if (opts.graceful && client.connected) {
          client.publish(deviceTopic(d.deviceId, 'status'), this.status(d.deviceId, 'offline', 'shutdown'), { qos: 0, retain: true });
          await client.endAsync(false).catch(() => client.endAsync(true));
        } else {
          await client.endAsync(true).catch(() => undefined);
        }
      }),
    );
    this.counters.connected = 0;
  }

  private windowFactory(load: TelemetryLoad): TelemetryWindowFactory {
    return new TelemetryWindowFactory(load.shape ?? DEFAULT_WINDOW_SHAPE, load.intervalMs, this.opts.seed ?? 1);
  }

  /** A device's place in every interval, spread evenly over the fleet so it publishes at a steady rate. */
  private phase(index: number): number {
    return (index * PHI) % 1;
  }

  private startLoads(d: SimDevice, from: number): void {
    if (this.telemetry) this.scheduler.schedule(from + this.phase(d.index) * this.telemetry.intervalMs, d.index, WINDOW, d.telemetryToken);
    if (this.artifact) this.scheduler.schedule(from + this.phase(d.index) * this.artifact.intervalMs, d.index, CHUNK);
  }

  private run(index: number, action: number, token: number): void {
    const d = this.devices[index];
    if (!d || this.stopping) return;
    switch (action) {
      case CONNECT:
        if (d.password === null) void this.claim(d);
        else this.connect(d);
        return;
      case WINDOW:
        return this.windowTick(d, token);
      case CHUNK:
        return this.chunkTick(d);
      case REPORT:
        if (token === d.reportToken && d.pending) {
          const p = d.pending;
          d.pending = null;
          this.apply(d, p.desired, p.decision);
        }
        return;
    }
  }

  private connect(d: SimDevice): void {
    const epoch = ++d.epoch;
    const options: IClientOptions = {
      clientId: d.deviceId,
      username: d.deviceId,
      password: d.password ?? '',
      clean: true,
      resubscribe: false,
      reconnectPeriod: 0,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      keepalive: this.opts.keepaliveSeconds ?? 30,
      will: { topic: deviceTopic(d.deviceId, 'status'), payload: this.status(d.deviceId, 'offline', 'connection-lost'), qos: 1, retain: true },
    };
    const client = mqtt.connect(this.opts.url, options);
    d.client = client;
    const c = this.counters;
    client.on('connect', () => {
      if (d.epoch !== epoch) return;
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      d.connected = true;
      c.connected++;
      c.connects++;
      if (d.everConnected) c.reconnects++;
      else c.everConnected++;
      d.everConnected = true;
      d.backoff.reset();
      client.publish(deviceTopic(d.deviceId, 'status'), this.status(d.deviceId, 'online'), { qos: 1, retain: true });
      const topics: Record<string, { qos: 1 }> = { [deviceTopic(d.deviceId, 'desired')]: { qos: 1 } };
      if (this.artifact) topics[deviceTopic(d.deviceId, 'artifact/chunk')] = { qos: 1 };
      client.subscribe(topics, (err, grants) => {
        if (d.epoch !== epoch) return;
        if (err || (grants ?? []).some((g) => g.qos === 128)) c.subscribeRefused++;
      });
      this.publishReported(d);
      this.sendQueued(d);
    });
    client.on('message', (topic, payload) => {
      if (d.epoch !== epoch) return;
      if (topic.endsWith('/desired')) this.onDesired(d, payload);
      else if (topic.endsWith('/artifact/chunk')) this.onChunk(payload);
    });
    client.on('error', (err) => {
      if (d.epoch !== epoch) return;
      const code = (err as { code?: unknown }).code;
      if (code === 3) c.serverUnavailable++;
      else if (typeof code === 'number') c.connackFailures++;
      else if (!d.connected) c.connectErrors++;
      else return;
      const kind = typeof code === 'string' ? code : err.message.slice(0, 60);
      if (kind in c.errorKinds || Object.keys(c.errorKinds).length < 8) c.errorKinds[kind] = (c.errorKinds[kind] ?? 0) + 1;
    });
    client.on('close', () => {
      if (d.epoch !== epoch) return;
      d.epoch++;
      d.client = null;
      if (d.connected) {
        d.connected = false;
        c.connected--;
        c.disconnects++;
      }
      // What was in flight goes again, first, over the next connection.
      if (d.inflight.length > 0) {
        d.queue = d.inflight.concat(d.queue);
        d.inflight = [];
      }
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      if (!this.stopping) this.scheduler.schedule(Date.now() + d.backoff.next(), d.index, CONNECT);
    });
  }

  /**
   * A claimant's one request for the device's own credentials (the answer's
   * password sealed to a key made for this claim); then the device
   * connects with them.
   */
  private async claim(d: SimDevice): Promise<void> {
    const c = this.counters;
    const token = this.opts.claimToken as string;
    const requestId = `claim-${d.index}-${++d.requests}`;
    const responseTopic = deviceTopic(d.deviceId, 'provision/response');
    const keys = sealingKeyPair();
    let client: MqttClient | null = null;
    try {
      client = await mqtt.connectAsync(
        this.opts.url,
        { clientId: d.deviceId, username: claimantUsername(token), password: token, clean: true, reconnectPeriod: 0, connectTimeout: this.opts.connectTimeoutMs ?? 10_000 },
        false,
      );
      const claimant = client;
      const answer = new Promise<string | null>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer to the claim')), 15_000);
        claimant.on('close', () => {
          clearTimeout(timer);
          reject(new Error('claimant connection closed'));
        });
        claimant.on('message', (topic, payload) => {
          if (topic !== responseTopic) return;
          const r = decodeJson(provisionResponseSchema, payload);
          if (!r.ok || r.value.requestId !== requestId) return;
          clearTimeout(timer);
          if (r.value.status !== 'issued') return resolve(null);
          try {
            resolve(openSecret(r.value.password, keys.privateKey, provisionSealingContext(d.deviceId, requestId)));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
      answer.catch(() => undefined);
      await claimant.subscribeAsync(responseTopic, { qos: 1 });
      const request: ProvisionRequest = { requestId, deviceId: d.deviceId, claimToken: token, publicKey: keys.publicKey, agentVersion: this.agentVersion };
      await claimant.publishAsync(deviceTopic(d.deviceId, 'provision/request'), Buffer.from(JSON.stringify(request)), { qos: 1 });
      const password = await answer;
      if (password === null) c.claimRefused++;
      else {
        c.claims++;
        d.password = password;
      }
    } catch {
      c.claimErrors++;
    } finally {
      await client?.endAsync(true).catch(() => undefined);
    }
    if (this.stopping) return;
    if (d.password !== null) this.connect(d);
    else this.scheduler.schedule(Date.now() + d.backoff.next(), d.index, CONNECT);
  }

  private windowTick(d: SimDevice, token: number): void {
    const load = this.telemetry;
    if (token !== d.telemetryToken || !load) return;
    const c = this.counters;
    const now = Date.now();
    d.queue.push(d.nextSeq++, now);
    c.windowsProduced++;
    if (d.queue.length + d.inflight.length > 2 * this.maxOutbox) {
      d.queue.splice(0, 2);
      c.windowsDropped++;
    }
    this.sendQueued(d);
    this.scheduler.schedule(now + load.intervalMs, d.index, WINDOW, token);
  }

  private sendQueued(d: SimDevice): void {
    const client = d.client;
    if (d.queue.length === 0) return;
    const windows = (this.windows ??= this.windowFactory({ intervalMs: 10_000 }));
    const max = 2 * (this.telemetry?.maxInFlight ?? 4);
    const c = this.counters;
    const epoch = d.epoch;
    const topic = deviceTopic(d.deviceId, 'telemetry');
    while (client && d.connected && d.queue.length > 0 && d.inflight.length < max) {
      const seq = d.queue.shift() as number;
      const end = d.queue.shift() as number;
      d.inflight.push(seq, end);
      if (seq <= d.sentHigh) c.windowsResent++;
      else d.sentHigh = seq;
      c.windowsSent++;
      const payload = windows.encode(d.deviceId, seq, d.index * 7 + seq, end, d.active, d.queue.length / 2);
      client.publish(topic, payload, { qos: 1 }, (err) => {
        if (err || d.epoch !== epoch) return;
        const at = pairIndex(d.inflight, seq);
        if (at < 0) return;
        d.inflight.splice(at, 2);
        d.acked++;
        c.windowsAcked++;
        this.sendQueued(d);
      });
    }
  }

  private chunkTick(d: SimDevice): void {
    const a = this.artifact;
    if (!a) return;
    const client = d.client;
    if (client && d.connected) {
      const chunks = Math.max(1, Math.ceil(a.length / a.chunkBytes));
      const k = (d.index + d.requests) % chunks;
      const offset = k * a.chunkBytes;
      const request = { requestId: `${d.deviceId}-${++d.requests}`, sha256: a.sha256, offset, length: Math.min(a.chunkBytes, a.length - offset) };
      client.publish(deviceTopic(d.deviceId, 'artifact/request'), Buffer.from(JSON.stringify(request)), { qos: 1 });
      this.counters.chunkRequests++;
    }
    this.scheduler.schedule(Date.now() + a.intervalMs, d.index, CHUNK);
  }

  private onChunk(payload: Buffer): void {
    const c = this.counters;
    const frame = decodeChunkFrame(payload);
    if (!frame.ok || 'error' in frame.value.header) {
      c.chunkErrors++;
      return;
    }
    c.chunkFrames++;
    c.chunkBytes += frame.value.data.length;
    if (createHash('sha256').update(frame.value.data).digest('hex') !== frame.value.header.chunkSha256) c.chunkBad++;
  }

  private onDesired(d: SimDevice, payload: Buffer): void {
    // An empty retained publish clears the topic: nothing desired.
    if (payload.length === 0) return;
    const c = this.counters;
    c.desiredReceived++;
    const decoded = decodeJson(signedDesiredStateSchema, payload);
    if (!decoded.ok || decoded.value.signed.deviceId !== d.deviceId) {
      c.desiredInvalid++;
      return;
    }
    const desired = decoded.value.signed;
    if (desired.generation <= d.handledGeneration) {
      c.desiredRepeated++;
      return;
    }
    d.handledGeneration = desired.generation;
    const decision = this.policy({ deviceId: d.deviceId, index: d.index, active: d.active, acceptedGeneration: d.acceptedGeneration }, desired);
    if (!decision) return;
    const after = decision.afterMs ?? 0;
    if (after <= 0) return this.apply(d, desired, decision);
    d.pending = { desired, decision };
    this.scheduler.schedule(Date.now() + after, d.index, REPORT, ++d.reportToken);
  }

  private apply(d: SimDevice, desired: DesiredState, decision: DesiredDecision): void {
    const target = desired.active ? modelRefOf(desired.active) : null;
    const at = Date.now();
    const reason = decision.reason ?? (decision.phase === 'active' ? undefined : `simulated ${decision.phase}`);
    if (decision.phase !== 'rejected') d.acceptedGeneration = desired.generation;
    if (decision.phase === 'active') d.active = target;
    const phase: DeploymentPhase = decision.phase === 'active' && target === null ? 'idle' : decision.phase;
    d.deployment = { phase, generation: desired.generation, target, at, ...(reason === undefined ? {} : { reason }) };
    this.publishReported(d);
  }

  private publishReported(d: SimDevice): void {
    const client = d.client;
    if (!client || !d.connected) return;
    const at = Date.now();
    const state: ReportedState = {
      deviceId: d.deviceId,
      agentVersion: this.agentVersion,
      at,
      acceptedGeneration: d.acceptedGeneration,
      active: d.active,
      deployment: d.deployment ?? { phase: 'idle', generation: 0, target: null, at },
      cameras: [{ cameraId: 'cam-0', state: 'online', framesPerSecond: 5, restarts: 0 }],
    };
    const c = this.counters;
    const epoch = d.epoch;
    c.reportedPublished++;
    client.publish(deviceTopic(d.deviceId, 'reported'), Buffer.from(JSON.stringify(state)), { qos: 1, retain: true }, (err) => {
      if (!err && d.epoch === epoch) c.reportedAcked++;
    });
  }

  private status(deviceId: string, state: 'online' | 'offline', reason?: 'shutdown' | 'connection-lost'): Buffer {
    return Buffer.from(JSON.stringify({ deviceId, state, ...(reason ? { reason } : {}), agentVersion: this.agentVersion, since: Date.now() }));
  }

  private async until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Where the pair starting with `seq` sits in a [seq, x, seq, x, ...] array; -1 if absent. */
function pairIndex(pairs: readonly number[], seq: number): number {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === seq) return i;
  return -1;
}
