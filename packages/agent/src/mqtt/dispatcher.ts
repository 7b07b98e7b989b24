import { parseDeviceTopic, type Decoded, type DeviceTopicKind } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import type { MqttConnection } from './connection.js';

/** One handler per incoming topic kind: decode at the boundary, then act on a typed value. */
export interface MessageHandler<T> {
  kind: DeviceTopicKind;
  /** zod-backed decoding; a failure names the bad field */
  decode(payload: Buffer): Decoded<T>;
  handle(value: T): void | Promise<void>;
  /** an empty payload clears a retained message; most kinds just ignore it */
  onEmpty?(): void;
}

/**
 * The single place messages enter the agent. It subscribes the device's own
 * topics for every registered kind on each connect and routes by parsed
 * topic. A bad payload is logged with its reason and dropped: one broken
 * message must never take the agent down.
 */
export class MessageDispatcher {
  // Handlers of different payload types live in one table; each is only ever called with its own decode's output.
  private readonly handlers = new Map<DeviceTopicKind, MessageHandler<unknown>>();
  private readonly onConnect = () => void this.subscribe();
  private readonly onMessage = (topic: string, payload: Buffer) => void this.dispatch(topic, payload);
  private started = false;

  constructor(
    private readonly connection: MqttConnection,
    private readonly log: Logger,
  ) {}

  register<T>(handler: MessageHandler<T>): void {
    if (this.handlers.has(handler.kind)) throw new Error(`a handler for ${handler.kind} is already registered`);
    this.handlers.set(handler.kind, handler as MessageHandler<unknown>);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.connection.on('connect', this.onConnect);
    this.connection.on('message', this.onMessage);
    if (this.connection.connected) void this.subscribe();
  }

  stop(): void {
    this.started = false;
    this.connection.off('connect', this.onConnect);
    this.connection.off('message', this.onMessage);
  }

  private async subscribe(): Promise<void> {
    const kinds = [...this.handlers.keys()];
    try {
      await this.connection.subscribe(kinds);
      this.log.debug({ kinds }, 'subscribed');
    } catch (err) {
      this.log.error({ err: (err as Error).message, kinds }, 'subscribe failed');
    }
  }

  /** Exposed for tests; resolves once the handler has finished. */
  async dispatch(topic: string, payload: Buffer): Promise<void> {
    const parsed = parseDeviceTopic(topic);
    if (!parsed || parsed.deviceId !== this.connection.deviceId || parsed.direction !== 'to-device') {
      this.log.warn({ topic }, 'message on a topic this device does not handle; dropped');
      return;
    }
    const handler = this.handlers.get(parsed.kind);
    if (!handler) {
      this.log.warn({ topic }, 'no handler for topic; dropped');
      return;
    }
    if (payload.length === 0) {
      if (handler.onEmpty) handler.onEmpty();
      else this.log.warn({ topic }, 'empty payload; dropped');
      return;
    }
    const decoded = handler.decode(payload);
    if (!decoded.ok) {
      this.log.warn({ topic, reason: decoded.error, bytes: payload.length }, 'invalid payload; dropped');
      return;
    }
    try {
      await handler.handle(decoded.value);
    } catch (err) {
      this.log.error({ topic, err: (err as Error).message, stack: (err as Error).stack }, 'handler failed');
    }
  }
}
