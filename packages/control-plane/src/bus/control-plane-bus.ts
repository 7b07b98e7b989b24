import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';

export interface BusOptions {
  url: string;
  username: string;
  password: string;
  clientId: string;
  /**
   * false: a persistent session, so the broker queues what devices publish
   * while the control plane is away (an external broker outlives it; the
   * embedded one goes down with it). Default true.
   */
  clean?: boolean;
  /** for mqtts://: CA certificates (PEM) the broker's certificate must chain to (default: the system's), and a client certificate and key */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
  /** Subscribe through this MQTT 5 shared-subscription group (`$share/<group>/...`), so replicas split the devices' messages. */
  sharedGroup?: string | undefined;
  /** start() fails after this long without a connection (default 60 s), instead of waiting on an unreachable broker for ever */
  startTimeoutMs?: number;
}

export type MessageListener = (topic: string, payload: Buffer) => void;

/**
 * The control plane's own MQTT client. It talks to the embedded broker over
 * loopback exactly as it does to an external broker, so both modes share
 * one code path.
 */
export class ControlPlaneBus {
  private client: MqttClient | null = null;
  private readonly listeners: MessageListener[] = [];
  private readonly connectHooks: (() => void)[] = [];

  constructor(
    private readonly opts: BusOptions,
    private readonly log: Logger,
  ) {}

  onMessage(listener: MessageListener): void {
    this.listeners.push(listener);
  }

  /** Runs at every (re)connect, e.g. to republish retained state a restarted broker lost. */
  onConnect(hook: () => void): void {
    this.connectHooks.push(hook);
  }

  async start(filters: string[]): Promise<void> {
    const client = mqtt.connect(this.opts.url, {
      clientId: this.opts.clientId,
      username: this.opts.username,
      password: this.opts.password,
      clean: this.opts.clean ?? true,
      ...this.opts.tls,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
    });
    this.client = client;
    const group = this.opts.sharedGroup;
    const subscriptions = group === undefined ? filters : filters.map((f) => `$share/${group}/${f}`);
    client.on('message', (topic, payload) => {
      for (const l of this.listeners) l(topic, payload);
    });
    client.on('error', (err) => this.log.error({ err: err.message }, 'control plane MQTT client error'));
    let subscribed: () => void = () => undefined;
    const firstSubscription = new Promise<void>((resolve) => (subscribed = resolve));
    client.on('connect', () => {
      // No Nagle: small packets (PUBACKs, chunk frames' tails) must not wait ~40 ms for delayed ACKs.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      // Also on a resumed session: a broker that lost it (restarted without persistence) has none.
      if (subscriptions.length === 0) subscribed();
      else client.subscribe(subscriptions, { qos: 1 }, (err, granted) => {
        if (err) this.log.error({ err: err.message }, 'control plane subscribe failed');
        const refused = granted?.filter((g) => g.qos >= 0x80).map((g) => g.topic) ?? [];
        if (refused.length > 0) this.log.error({ refused }, 'the broker refused the control plane subscriptions: check its ACL for the control plane');
        if (!err) subscribed();
      });
      for (const hook of this.connectHooks) hook();
    });
    // mqtt.js retries a refused or unreachable socket silently: say so, and give up at the deadline.
    let attempts = 0;
    const onClose = () => {
      attempts++;
      if (attempts === 1 || attempts % 10 === 0) this.log.warn({ url: this.opts.url, attempts }, 'cannot reach the MQTT broker yet; retrying');
    };
    client.on('close', onClose);
    const timeoutMs = this.opts.startTimeoutMs ?? 60_000;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection to the MQTT broker at ${this.opts.url} within ${Math.round(timeoutMs / 1000)} s (${attempts} attempts)`)), timeoutMs);
        // A broker that answers and refuses (bad credentials) is final; one not up yet (refused socket) is retried.
        const onError = (err: Error & { code?: unknown }) => {
          if (typeof err.code !== 'number') return;
          clearTimeout(timer);
          reject(err);
        };
        client.on('error', onError);
        client.once('connect', () => {
          clearTimeout(timer);
          client.off('error', onError);
          resolve();
        });
      });
    } catch (err) {
      this.client = null;
      client.end(true);
      throw err;
    } finally {
      client.off('close', onClose);
    }
    // Only then is everything devices publish heard: the broker opens to devices after this.
    await firstSubscription;
  }

  publish(topic: string, payload: Buffer | string, opts: { qos: 0 | 1; retain?: boolean } = { qos: 1 }): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('bus not started'));
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, { qos: opts.qos, retain: opts.retain ?? false }, (err) => (err ? reject(err) : resolve()));
    });
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client) await client.endAsync();
  }
}
