import { decodeJson, parseDeviceTopic, type DeviceTopicKind, type ParsedDeviceTopic } from '@perch/shared';
import type { Logger } from 'pino';
import type { z } from 'zod';

/** One small handler per device-to-cloud message kind. */
export interface DeviceMessageHandler<S extends z.ZodType = z.ZodType> {
  readonly kind: DeviceTopicKind;
  readonly schema: S;
  /**
   * `acknowledged`: the broker has already acknowledged the message to the
   * device (the bus path); false where the acknowledgement waits for the
   * returned promise (the embedded broker's intake).
   */
  handle(deviceId: string, value: z.infer<S>, acknowledged: boolean): void | Promise<void>;
}

export function defineHandler<S extends z.ZodType>(h: DeviceMessageHandler<S>): DeviceMessageHandler<S> {
  return h;
}

/**
 * A handler that takes the payload as it came and decodes it itself, where
 * that is cheaper than on the event loop (telemetry: in its writer thread).
 * It settles with MessageMalformed for a payload that fails to decode, which
 * the dispatcher then drops as it drops what it decodes itself.
 */
export interface RawDeviceMessageHandler {
  readonly kind: DeviceTopicKind;
  readonly raw: true;
  handle(deviceId: string, payload: Buffer, acknowledged: boolean): Promise<void>;
}

type AnyHandler = DeviceMessageHandler | RawDeviceMessageHandler;

export interface DispatchStats {
  handled: number;
  dropped: number;
  /** messages a handler did not keep for now (MessageNotKept): the device sends them again */
  notKept: number;
}

/** A handler's "not now": the message is not stored and not lost, since it is not acknowledged either; its handler logs why, once. */
export class MessageNotKept extends Error {}

/** A raw handler's verdict on a payload that does not decode: dropped (and acknowledged: sending it again would not help). */
export class MessageMalformed extends Error {}

/**
 * Routes every message on a device topic to its handler after decoding it
 * with the handler's schema (a raw handler decodes it itself). A message
 * that does not parse, does not match
 * its topic's device or makes a handler throw is logged and dropped; the
 * control plane keeps serving.
 */
export class DeviceMessageDispatcher {
  private readonly handlers = new Map<DeviceTopicKind, AnyHandler>();
  readonly stats: DispatchStats = { handled: 0, dropped: 0, notKept: 0 };

  constructor(private readonly log: Logger) {}

  register(handler: DeviceMessageHandler<z.ZodType> | RawDeviceMessageHandler): this {
    if (this.handlers.has(handler.kind)) throw new Error(`two handlers for ${handler.kind}`);
    this.handlers.set(handler.kind, handler);
    return this;
  }

  kinds(): DeviceTopicKind[] {
    return [...this.handlers.keys()];
  }

  /**
   * Undefined when the message was dealt with at once (handled, or dropped
   * as malformed: sending it again would not help); else a promise that
   * resolves once the handler has it durable and rejects when the handler
   * did not keep it (the broker's intake then leaves it unacknowledged).
   */
  dispatch(topic: string, payload: Buffer, acknowledged = true): Promise<void> | undefined {
    return this.dispatchParsed(parseDeviceTopic(topic), topic, payload, acknowledged);
  }

  /** As dispatch(), for a caller that has parsed the topic already (`t`: null when it is no device topic). */
  dispatchParsed(t: ParsedDeviceTopic | null, topic: string, payload: Buffer, acknowledged: boolean): Promise<void> | undefined {
    const handler = t ? this.handlers.get(t.kind) : undefined;
    if (!t || !handler) return this.drop(topic, 'no handler for this topic');
    if (payload.length === 0) {
      // An empty retained publish clears a topic; nothing to ingest.
      return undefined;
    }
    if ('raw' in handler) return this.settled(topic, handler.handle(t.deviceId, payload, acknowledged));
    const decoded = decodeJson(handler.schema, payload);
    if (!decoded.ok) return this.drop(topic, decoded.error);
    const value = decoded.value as unknown;
    if (typeof value === 'object' && value !== null && 'deviceId' in value && value.deviceId !== t.deviceId) {
      return this.drop(topic, `payload deviceId ${String(value.deviceId)} does not match the topic's device ${t.deviceId}`);
    }
    try {
      const result = handler.handle(t.deviceId, decoded.value, acknowledged);
      if (result instanceof Promise) return this.settled(topic, result);
      this.stats.handled++;
    } catch (err) {
      this.drop(topic, `handler failed: ${(err as Error).message}`);
      // Not yet acknowledged (a write that failed, a full disk): the device keeps it and sends it again.
      if (!acknowledged) return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return undefined;
  }

  /** Counts how a handler's promise settled; it rejects only when the message was not kept or the handler failed. */
  private settled(topic: string, result: Promise<void>): Promise<void> {
    return result.then(
      () => {
        this.stats.handled++;
      },
      (err: unknown) => {
        if (err instanceof MessageMalformed) {
          this.drop(topic, err.message);
          return;
        }
        if (err instanceof MessageNotKept) this.stats.notKept++;
        else this.drop(topic, `handler failed: ${(err as Error).message}`);
        throw err;
      },
    );
  }

  private drop(topic: string, reason: string): undefined {
    this.stats.dropped++;
    this.log.warn({ topic, reason }, 'dropped device message');
    return undefined;
  }
}
