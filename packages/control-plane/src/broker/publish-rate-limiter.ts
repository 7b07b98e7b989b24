import { TokenBucket } from '../artifacts/token-bucket.js';

export interface PublishRateLimits {
  messagesPerSecond: number;
  burstMessages: number;
  /** payload bytes */
  bytesPerSecond: number;
  /** at least the largest payload allowed, or a QoS 0 publish that size could never pass */
  burstBytes: number;
  /** a QoS 1/2 publish that would wait longer than this for its tokens disconnects its client instead */
  maxDelayMs: number;
}

/**
 * A device publishes a telemetry window every few seconds, an event now and
 * then, and while downloading up to ~1000 chunk requests a second on a LAN
 * (256 KiB chunks at 200 MiB/s); an outbox flushed after a week offline is
 * tens of MB. These leave all of that unthrottled and stop a client from
 * taking more than a few percent of what aedes can route (~16k msg/s).
 */
export const DEFAULT_PUBLISH_RATE: PublishRateLimits = {
  messagesPerSecond: 1000,
  burstMessages: 2000,
  bytesPerSecond: 2 * 1024 * 1024,
  burstBytes: 8 * 1024 * 1024,
  maxDelayMs: 10_000,
};

export type RateVerdict = { kind: 'pass' } | { kind: 'drop' } | { kind: 'delay'; ms: number } | { kind: 'disconnect'; ms: number };

const PASS: RateVerdict = { kind: 'pass' };
const DROP: RateVerdict = { kind: 'drop' };

/**
 * Two token buckets per client id, messages and payload bytes, kept across
 * reconnects so that reconnecting buys a flooding client nothing. QoS 0 is
 * dropped when the buckets are empty (that is what QoS 0 promises). QoS 1/2
 * is never dropped: it borrows its tokens and is held, unacknowledged, until
 * the debt is paid (held-publishes.ts). An agent keeps only a window of
 * records in flight, so its debt stays small; a client more than
 * `maxDelayMs` in debt is flooding and is disconnected, which also bounds
 * what the broker holds for it. Its outbox, if any, sends again later.
 */
export class PublishRateLimiter {
  private readonly buckets = new Map<string, { messages: TokenBucket; bytes: TokenBucket }>();

  constructor(readonly limits: PublishRateLimits) {}

  judge(clientId: string, qos: number, bytes: number, now: number = performance.now()): RateVerdict {
    const b = this.bucketsOf(clientId, now);
    if (qos === 0) {
      // One refused for its bytes still spends its message token: the broker read and parsed it.
      return b.messages.tryTake(1, now) && b.bytes.tryTake(bytes, now) ? PASS : DROP;
    }
    const ms = Math.max(b.messages.reserve(1, now), b.bytes.reserve(bytes, now));
    if (ms === 0) return PASS;
    return ms > this.limits.maxDelayMs ? { kind: 'disconnect', ms } : { kind: 'delay', ms };
  }

  /** Forgets clients whose buckets have filled up again: they are as if new. */
  sweep(now: number = performance.now()): void {
    for (const [id, b] of this.buckets) if (b.messages.isFull(now) && b.bytes.isFull(now)) this.buckets.delete(id);
  }

  get trackedClients(): number {
    return this.buckets.size;
  }

  private bucketsOf(clientId: string, now: number): { messages: TokenBucket; bytes: TokenBucket } {
    let b = this.buckets.get(clientId);
    if (!b) {
      const l = this.limits;
      b = { messages: new TokenBucket(l.messagesPerSecond, l.burstMessages, now), bytes: new TokenBucket(l.bytesPerSecond, l.burstBytes, now) };
      this.buckets.set(clientId, b);
    }
    return b;
  }
}
