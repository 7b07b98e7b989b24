import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';

export interface WebhookTarget {
  url: string;
  /** signs each request when given */
  secret: string | null;
}

export interface WebhookOptions {
  /** tries per event, the first included */
  maxAttempts: number;
  /** the first retry waits up to this long, doubling each time (full jitter) */
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  /** events waiting per target; the oldest are dropped beyond */
  maxQueue: number;
}

export const DEFAULT_WEBHOOK_OPTIONS: WebhookOptions = { maxAttempts: 8, baseDelayMs: 1000, maxDelayMs: 60_000, timeoutMs: 10_000, maxQueue: 1000 };

export const SIGNATURE_HEADER = 'x-perch-signature';
export const TIMESTAMP_HEADER = 'x-perch-timestamp';
export const EVENT_HEADER = 'x-perch-event';
export const DELIVERY_HEADER = 'x-perch-delivery';

/**
 * `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"): the receiver
 * recomputes it over the raw body and rejects old timestamps (replays).
 */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

interface Pending {
  id: string;
  type: string;
  body: string;
  attempts: number;
}

export interface WebhookStats {
  delivered: number;
  retried: number;
  /** given up after maxAttempts, or pushed out of a full queue */
  dropped: number;
}

class TargetQueue {
  readonly queue: Pending[] = [];
  busy = false;
  timer: NodeJS.Timeout | null = null;
  constructor(readonly target: WebhookTarget) {}
}

/**
 * Delivers events to webhooks in order per target, off the caller's path:
 * `enqueue` never waits and never throws. A failed POST (network error,
 * timeout, any status but 2xx) is tried again after a jittered, doubling
 * delay. Pending events live in memory: a restart loses them (the rollout's
 * history in SQLite keeps every event).
 */
export class WebhookDelivery {
  private readonly targets: TargetQueue[];
  private readonly opts: WebhookOptions;
  private stopped = false;
  private readonly inFlight = new Set<AbortController>();
  readonly stats: WebhookStats = { delivered: 0, retried: 0, dropped: 0 };

  constructor(
    targets: readonly WebhookTarget[],
    private readonly log: Logger,
    opts: Partial<WebhookOptions> = {},
  ) {
    this.targets = targets.map((t) => new TargetQueue(t));
    this.opts = { ...DEFAULT_WEBHOOK_OPTIONS, ...opts };
  }

  enqueue(id: string, type: string, payload: unknown): void {
    if (this.stopped) return;
    const body = JSON.stringify(payload);
    for (const t of this.targets) {
      t.queue.push({ id, type, body, attempts: 0 });
      if (t.queue.length > this.opts.maxQueue) {
        const lost = t.queue.splice(t.busy ? 1 : 0, 1)[0];
        this.stats.dropped++;
        this.log.warn({ url: t.target.url, event: lost?.id }, 'webhook queue full; oldest event dropped');
      }
      this.pump(t);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.targets) if (t.timer) clearTimeout(t.timer);
    for (const c of this.inFlight) c.abort();
  }

  private pump(t: TargetQueue): void {
    if (t.busy || t.timer || this.stopped) return;
    const next = t.queue[0];
    if (!next) return;
    t.busy = true;
    void this.attempt(t, next).finally(() => {
      t.busy = false;
      this.pump(t);
    });
  }

  private async attempt(t: TargetQueue, p: Pending): Promise<void> {
    p.attempts++;
    const timestamp = String(Date.now());
    const headers: Record<string, string> = { 'content-type': 'application/json', [EVENT_HEADER]: p.type, [DELIVERY_HEADER]: p.id, [TIMESTAMP_HEADER]: timestamp };
    if (t.target.secret !== null) headers[SIGNATURE_HEADER] = webhookSignature(t.target.secret, timestamp, p.body);
    const abort = new AbortController();
    this.inFlight.add(abort);
    const timer = setTimeout(() => abort.abort(), this.opts.timeoutMs);
    let problem: string | null = null;
    try {
      const res = await fetch(t.target.url, { method: 'POST', headers, body: p.body, signal: abort.signal });
      await res.body?.cancel();
      if (!res.ok) problem = `HTTP ${res.status}`;
    } catch (err) {
      problem = (err as Error).message;
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(abort);
    }
    if (this.stopped) return;
    if (problem === null) {
      t.queue.shift();
      this.stats.delivered++;
      return;
    }
    if (p.attempts >= this.opts.maxAttempts) {
      t.queue.shift();
      this.stats.dropped++;
      this.log.error({ url: t.target.url, event: p.id, attempts: p.attempts, problem }, 'webhook delivery given up');
      return;
    }
    this.stats.retried++;
    const delay = Math.random() * Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (p.attempts - 1));
    this.log.warn({ url: t.target.url, event: p.id, attempts: p.attempts, problem, retryInMs: Math.round(delay) }, 'webhook delivery failed; will retry');
    t.timer = setTimeout(() => {
      t.timer = null;
      this.pump(t);
    }, delay);
  }
}
