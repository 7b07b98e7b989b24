import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';

export interface BusOptions {
  url: string;
  username: string;
  password: string;
  clientId: string;
}

export type MessageListener = (topic: string, payload: Buffer) => void;

/**
 * The control plane's own MQTT client. It talks to the embedded broker over
 * loopback exactly as it would to an external broker, so both modes share
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
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
    });
    this.client = client;
    client.on('message', (topic, payload) => {
      for (const l of this.listeners) l(topic, payload);
    });
    client.on('error', (err) => this.log.error({ err: err.message }, 'control plane MQTT client error'));
    client.on('connect', () => {
      // No Nagle: small packets (PUBACKs, chunk frames' tails) must not wait ~40 ms for delayed ACKs.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      client.subscribe(filters, { qos: 1 }, (err) => {
        if (err) this.log.error({ err: err.message }, 'control plane subscribe failed');
      });
      for (const hook of this.connectHooks) hook();
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      client.once('error', onError);
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
    });
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
