import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { OutboxEntry, WebhookOutbox } from './webhook-outbox.js';

export interface WebhookTarget {
  url: string;
  /** signs each request when given */
  secret: string | null;
}

export interface WebhookOptions {
  /** tries per delivery, the first included, counted across restarts */
  maxAttempts: number;
  /** a delivery older than this is given up, however few its tries (a control plane down for days sends no stale news) */
  maxAgeMs: number;
  /** the first retry waits up to this long, doubling each time (full jitter) */
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  /** deliveries waiting per webhook; the oldest are given up beyond */
  maxPending: number;
}

export const DEFAULT_WEBHOOK_OPTIONS: WebhookOptions = { maxAttempts: 8, maxAgeMs: 24 * 3600_000, baseDelayMs: 1000, maxDelayMs: 60_000, timeoutMs: 10_000, maxPending: 10_000 };

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

/** The delay before retry `attempts` + 1: full jitter over a doubling, capped window. */
export function retryDelayMs(attempts: number, opts: Pick<WebhookOptions, 'baseDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  return random() * Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, attempts - 1));
}

export interface WebhookStats {
  delivered: number;
  retried: number;
  /** given up: too many tries, too old, pushed out of a full outbox, or for a webhook no longer configured */
  givenUp: number;
}

class TargetState {
  busy = false;
  timer: NodeJS.Timeout | null = null;
  /** the outbox row being sent, never pushed out by an overflow */
  sending: number | null = null;
  constructor(readonly target: WebhookTarget) {}
}

/**
 * Delivers events to webhooks through a SQLite outbox: `enqueue` writes one
 * row per webhook (synchronously, so inside the caller's transaction) and
 * never waits for the network. Each webhook's rows go out in order, one at
 * a time; a 2xx deletes the row, anything else (network error, timeout,
 * other status) is tried again after a jittered, doubling delay, stored
 * with the row so a restart keeps it. A row is given up, counted and
 * logged after `maxAttempts` tries or past `maxAgeMs`. Delivery is at least
 * once: a control plane stopped between the receiver's 2xx and the delete
 * sends that event again, with the same `x-perch-delivery`.
 */
export class WebhookDelivery {
  private readonly targets: TargetState[];
  private readonly opts: WebhookOptions;
  private started = false;
  private stopped = false;
  private readonly aborts = new Set<AbortController>();
  private readonly inFlight = new Set<Promise<void>>();
  readonly stats: WebhookStats = { delivered: 0, retried: 0, givenUp: 0 };

  constructor(
    private readonly outbox: WebhookOutbox,
    targets: readonly WebhookTarget[],
    private readonly log: Logger,
    opts: Partial<WebhookOptions> = {},
  ) {
    const urls = new Set<string>();
    for (const t of targets) {
      // A webhook's queue is keyed by its URL.
      if (urls.has(t.url)) throw new Error(`rollouts.webhooks: ${t.url} is listed twice`);
      urls.add(t.url);
    }
    this.targets = targets.map((t) => new TargetState(t));
    this.opts = { ...DEFAULT_WEBHOOK_OPTIONS, ...opts };
  }

  /**
   * Queues an event for every webhook. Never throws: a write that fails
   * (a full disk) is logged and counted as given up, the state change it
   * reports stands. Sending starts after the caller's synchronous work,
   * so after its transaction commits.
   */
  enqueue(deliveryId: string, type: string, payload: unknown): void {
    if (this.targets.length === 0) return;
    const body = JSON.stringify(payload);
    try {
      this.outbox.add(
        this.targets.map((t) => t.target.url),
        deliveryId,
        type,
        body,
        Date.now(),
      );
      for (const t of this.targets) this.trim(t);
    } catch (err) {
      this.stats.givenUp += this.targets.length;
      this.log.error({ err, delivery: deliveryId, type }, 'webhook delivery could not be stored; given up');
      return;
    }
    if (this.started && !this.stopped) queueMicrotask(() => this.pumpAll());
  }

  /** Sends what the outbox holds, a previous run's deliveries first. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    const orphans = this.outbox.orphans(this.targets.map((t) => t.target.url));
    for (const o of orphans) this.giveUp(o, 'its webhook is no longer configured');
    this.pumpAll();
  }

  /** Deliveries waiting, for every webhook. */
  pending(): number {
    return this.outbox.count();
  }

  /** Aborts the requests under way and waits for them: nothing touches the database after. What is unsent stays in the outbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.targets) {
      if (t.timer) clearTimeout(t.timer);
      t.timer = null;
    }
    for (const a of this.aborts) a.abort();
    await Promise.allSettled([...this.inFlight]);
  }

  private pumpAll(): void {
    for (const t of this.targets) this.pump(t);
  }

  private pump(t: TargetState): void {
    if (!this.started || this.stopped || t.busy || t.timer) return;
    let next: OutboxEntry | null;
    try {
      next = this.nextDue(t);
    } catch (err) {
      this.log.error({ err, url: t.target.url }, 'reading the webhook outbox failed; trying again later');
      this.later(t);
      return;
    }
    if (!next) return;
    const wait = next.nextAttemptAt - Date.now();
    // A wait longer than any retry now allows was stored under another config, or before the clock stepped back: due now.
    if (wait > 0 && wait <= this.opts.maxDelayMs) {
      t.timer = setTimeout(() => {
        t.timer = null;
        this.pump(t);
      }, wait);
      return;
    }
    t.busy = true;
    t.sending = next.id;
    let broken = false;
    const run = this.attempt(t, next)
      .catch((err: unknown) => {
        // The outbox refused a write (a full disk): not again at once.
        broken = true;
        this.log.error({ err, url: t.target.url, delivery: next.deliveryId }, 'webhook outbox write failed; trying again later');
      })
      .finally(() => {
        this.inFlight.delete(run);
        t.busy = false;
        t.sending = null;
        if (broken) this.later(t);
        else this.pump(t);
      });
    this.inFlight.add(run);
  }

  /** Looks again after the longest retry delay: the database is in trouble, and a loop would not help it. */
  private later(t: TargetState): void {
    if (this.stopped || t.timer) return;
    t.timer = setTimeout(() => {
      t.timer = null;
      this.pump(t);
    }, this.opts.maxDelayMs);
  }

  /** The webhook's oldest delivery, after giving up the ones too old to send. */
  private nextDue(t: TargetState): OutboxEntry | null {
    for (;;) {
      const head = this.outbox.head(t.target.url);
      if (!head || Date.now() - head.createdAt < this.opts.maxAgeMs) return head;
      this.giveUp(head, `older than ${this.opts.maxAgeMs / 1000} s`);
    }
  }

  private async attempt(t: TargetState, p: OutboxEntry): Promise<void> {
    this.outbox.markAttempt(p.id);
    const attempts = p.attempts + 1;
    const timestamp = String(Date.now());
    const headers: Record<string, string> = { 'content-type': 'application/json', [EVENT_HEADER]: p.eventType, [DELIVERY_HEADER]: p.deliveryId, [TIMESTAMP_HEADER]: timestamp };
    if (t.target.secret !== null) headers[SIGNATURE_HEADER] = webhookSignature(t.target.secret, timestamp, p.body);
    const abort = new AbortController();
    this.aborts.add(abort);
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
      this.aborts.delete(abort);
    }
    // Stopping: the row stays as it is, for the next start.
    if (this.stopped) return;
    if (problem === null) {
      this.outbox.remove(p.id);
      this.stats.delivered++;
      return;
    }
    if (attempts >= this.opts.maxAttempts) {
      this.giveUp({ ...p, attempts, lastError: problem }, `${attempts} tries failed`);
      return;
    }
    const delay = retryDelayMs(attempts, this.opts);
    this.outbox.retryAt(p.id, Date.now() + delay, problem);
    this.stats.retried++;
    this.log.warn({ url: t.target.url, delivery: p.deliveryId, attempts, problem, retryInMs: Math.round(delay) }, 'webhook delivery failed; will retry');
  }

  /** Pushes the oldest deliveries out of a webhook's full outbox. */
  private trim(t: TargetState): void {
    for (const o of this.outbox.overflow(t.target.url, this.opts.maxPending, t.sending)) this.giveUp(o, `more than ${this.opts.maxPending} deliveries waiting`);
  }

  private giveUp(p: OutboxEntry, why: string): void {
    this.outbox.remove(p.id);
    this.stats.givenUp++;
    this.log.error(
      { url: p.webhookUrl, delivery: p.deliveryId, type: p.eventType, attempts: p.attempts, ageMs: Date.now() - p.createdAt, lastError: p.lastError, why, givenUp: this.stats.givenUp },
      'webhook delivery given up',
    );
  }
}
