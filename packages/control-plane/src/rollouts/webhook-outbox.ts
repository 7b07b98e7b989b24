import { writeTransaction, type Db } from '../store/database.js';

/** One webhook delivery waiting for a 2xx. */
export interface OutboxEntry {
  id: number;
  webhookUrl: string;
  /** `<rolloutId>:<eventId>`: the same across retries and restarts, so a receiver can drop a repeat */
  deliveryId: string;
  eventType: string;
  body: string;
  createdAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
}

interface OutboxRow {
  id: number;
  webhook_url: string;
  delivery_id: string;
  event_type: string;
  body: string;
  created_at: number;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
}

const toEntry = (r: OutboxRow): OutboxEntry => ({
  id: r.id,
  webhookUrl: r.webhook_url,
  deliveryId: r.delivery_id,
  eventType: r.event_type,
  body: r.body,
  createdAt: r.created_at,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  lastError: r.last_error,
});

/**
 * The rollout webhook outbox (`rollout_webhook_outbox`): deliveries stay
 * here until a 2xx or until they are given up, so a control plane that
 * stops with some unsent sends them after it starts again.
 */
export class WebhookOutbox {
  constructor(private readonly db: Db) {}

  /** Queues one delivery per webhook; a delivery already queued for a webhook is kept as it is. */
  add(webhookUrls: readonly string[], deliveryId: string, eventType: string, body: string, now: number): void {
    const stmt = this.db.prepare(
      `INSERT OR IGNORE INTO rollout_webhook_outbox (webhook_url, delivery_id, event_type, body, created_at, attempts, next_attempt_at)
       VALUES (?, ?, ?, ?, ?, 0, ?)`,
    );
    writeTransaction(this.db, () => {
      for (const url of webhookUrls) stmt.run(url, deliveryId, eventType, body, now, now);
    })();
  }

  /** The oldest delivery waiting for `webhookUrl`: the next to send, as order is kept per webhook. */
  head(webhookUrl: string): OutboxEntry | null {
    const row = this.db.prepare('SELECT * FROM rollout_webhook_outbox WHERE webhook_url = ? ORDER BY id LIMIT 1').get(webhookUrl) as OutboxRow | undefined;
    return row ? toEntry(row) : null;
  }

  /** Counted before the POST: a crash mid-request still uses up the attempt. */
  markAttempt(id: number): void {
    this.db.prepare('UPDATE rollout_webhook_outbox SET attempts = attempts + 1 WHERE id = ?').run(id);
  }

  retryAt(id: number, at: number, error: string): void {
    this.db.prepare('UPDATE rollout_webhook_outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?').run(at, error, id);
  }

  remove(id: number): void {
    this.db.prepare('DELETE FROM rollout_webhook_outbox WHERE id = ?').run(id);
  }

  count(webhookUrl?: string): number {
    const row = (
      webhookUrl === undefined
        ? this.db.prepare('SELECT COUNT(*) AS n FROM rollout_webhook_outbox').get()
        : this.db.prepare('SELECT COUNT(*) AS n FROM rollout_webhook_outbox WHERE webhook_url = ?').get(webhookUrl)
    ) as { n: number };
    return row.n;
  }

  /** The oldest deliveries of `webhookUrl` beyond its newest `keep`, but never `exceptId` (the one being sent). */
  overflow(webhookUrl: string, keep: number, exceptId: number | null): OutboxEntry[] {
    const excess = this.count(webhookUrl) - keep;
    if (excess <= 0) return [];
    return (
      this.db.prepare('SELECT * FROM rollout_webhook_outbox WHERE webhook_url = ? AND id IS NOT ? ORDER BY id LIMIT ?').all(webhookUrl, exceptId, excess) as OutboxRow[]
    ).map(toEntry);
  }

  /** Deliveries for webhooks no longer configured: nobody will send them. */
  orphans(webhookUrls: readonly string[]): OutboxEntry[] {
    return (
      this.db.prepare('SELECT * FROM rollout_webhook_outbox WHERE webhook_url NOT IN (SELECT value FROM json_each(?)) ORDER BY id').all(JSON.stringify(webhookUrls)) as OutboxRow[]
    ).map(toEntry);
  }

  all(): OutboxEntry[] {
    return (this.db.prepare('SELECT * FROM rollout_webhook_outbox ORDER BY id').all() as OutboxRow[]).map(toEntry);
  }
}
