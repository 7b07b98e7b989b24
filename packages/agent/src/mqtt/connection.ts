import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { deviceStatusSchema, deviceTopic, encodeJson, type DeviceStatus, type DeviceTopicKind } from '@perch/shared';
import { AGENT_VERSION } from '../agent-version.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { Logger } from '../log/logger.js';
import { JitteredBackoff } from '../backoff/jittered-backoff.js';

export type ConnectionOptions = Omit<AgentConfig['broker'], 'claimToken'> & { deviceId: string };

/** CONNACK codes of a refused login: 4/5 in MQTT 3.1.1, 134/135 in MQTT 5. */
const REFUSED_LOGIN = new Set([4, 5, 134, 135]);

export interface PublishOptions {
  qos: 0 | 1;
  retain?: boolean;
}

type ConnectionEvents = {
  /** after every successful connect, once `online` is announced */
  connect: [];
  message: [topic: string, payload: Buffer];
  disconnect: [];
  /** the broker refused the credentials; once, until a connect succeeds */
  refused: [reason: string];
};

/**
 * The agent's one MQTT connection. mqtt.js retries on a fixed interval, which
 * sends a whole fleet back at a restarted control plane in lockstep, so its
 * own reconnect is off and this class reconnects with jittered backoff.
 * The `status` topic says online/offline; the will covers a lost link.
 */
export class MqttConnection extends EventEmitter<ConnectionEvents> {
  private client: MqttClient | null = null;
  private readonly backoff: JitteredBackoff;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private lastError: string | undefined;
  private refusal: string | null = null;

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly log: Logger,
  ) {
    super();
    this.backoff = new JitteredBackoff(opts.reconnect.minMs, opts.reconnect.maxMs);
  }

  get deviceId(): string {
    return this.opts.deviceId;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Why the broker refused the credentials, while it does. */
  get refusedCredentials(): string | null {
    return this.refusal;
  }

  /**
   * Starts connecting in the background: the box works without a control
   * plane. `credentials` replace the configured ones (claimed or stored).
   */
  start(credentials?: { username: string; password: string }): void {
    if (this.client) return;
    this.stopping = false;
    const options: IClientOptions = {
      clientId: this.opts.deviceId,
      username: credentials?.username ?? this.opts.username,
      password: credentials?.password ?? this.opts.password,
      clean: true,
      // Subscriptions are made by the dispatcher on every connect instead.
      resubscribe: false,
      reconnectPeriod: 0,
      connectTimeout: this.opts.connectTimeoutMs,
      keepalive: this.opts.keepaliveSeconds,
      will: this.willMessage(),
      ...this.opts.tls,
    };
    const client = connect(this.opts.url, options);
    this.client = client;
    client.on('connect', () => this.onConnect(client));
    client.on('message', (topic, payload) => this.emit('message', topic, payload));
    client.on('error', (err) => {
      this.lastError = err.message;
      this.log.warn({ err: err.message, url: this.opts.url }, 'mqtt connection error');
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number' && REFUSED_LOGIN.has(code) && this.refusal === null) {
        this.refusal = err.message;
        this.emit('refused', err.message);
      }
    });
    client.on('close', () => this.onClose(client));
  }

  async publish(kind: DeviceTopicKind, payload: Buffer, opts: PublishOptions): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('mqtt connection is not started');
    await client.publishAsync(deviceTopic(this.opts.deviceId, kind), payload, { qos: opts.qos, retain: opts.retain ?? false });
  }

  async subscribe(kinds: DeviceTopicKind[]): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('mqtt connection is not started');
    const map = Object.fromEntries(kinds.map((k) => [deviceTopic(this.opts.deviceId, k), { qos: 1 as const }]));
    const grants = await client.subscribeAsync(map);
    const refused = grants.filter((g) => g.qos === 128);
    if (refused.length > 0) throw new Error(`broker refused subscription to ${refused.map((g) => g.topic).join(', ')}`);
  }

  /** Says goodbye (`offline`, reason shutdown) so the broker does not fire the will. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      const goodbye = this.statusPayload({ state: 'offline', reason: 'shutdown' });
      try {
        await withTimeout(client.publishAsync(deviceTopic(this.opts.deviceId, 'status'), goodbye, { qos: 1, retain: true }), 1500);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'could not publish offline status');
      }
      await withTimeout(client.endAsync(), 1000).catch(() => client.endAsync(true));
    } else {
      await client.endAsync(true);
    }
    this.client = null;
    this.log.info('mqtt connection closed');
  }

  private onConnect(client: MqttClient): void {
    // Nagle's algorithm holds a small packet (a chunk request, a PUBACK) until the last one is
    // acknowledged, and delayed ACKs hold that ~40 ms: request/answer traffic would crawl.
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    this.backoff.reset();
    this.lastError = undefined;
    this.refusal = null;
    this.log.info({ url: this.opts.url, clientId: this.opts.deviceId }, 'mqtt connected');
    client
      .publishAsync(deviceTopic(this.opts.deviceId, 'status'), this.statusPayload({ state: 'online' }), { qos: 1, retain: true })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'could not publish online status'));
    this.emit('connect');
  }

  private onClose(client: MqttClient): void {
    if (this.client !== client || this.stopping || this.reconnectTimer) return;
    this.emit('disconnect');
    const delay = this.backoff.next();
    this.log.info({ delayMs: delay, attempt: this.backoff.attempts, lastError: this.lastError }, 'mqtt disconnected; reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopping || this.client !== client) return;
      // Fresh `since` in the will; keep the stores so queued QoS 1 messages survive the reconnect.
      client.options.will = this.willMessage();
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delay);
  }

  private willMessage(): NonNullable<IClientOptions['will']> {
    return {
      topic: deviceTopic(this.opts.deviceId, 'status'),
      payload: this.statusPayload({ state: 'offline', reason: 'connection-lost' }),
      qos: 1,
      retain: true,
    };
  }

  private statusPayload(s: Pick<DeviceStatus, 'state' | 'reason'>): Buffer {
    const status: DeviceStatus = deviceStatusSchema.parse({ deviceId: this.opts.deviceId, agentVersion: AGENT_VERSION, since: Date.now(), ...s });
    return encodeJson(status);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
