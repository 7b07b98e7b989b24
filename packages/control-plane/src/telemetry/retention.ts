import type { Logger } from 'pino';
import type { Db } from '../store/database.js';

/** How long each kind of telemetry is kept, in days; null keeps it forever. */
export interface RetentionPolicy {
  rawWindowsDays: number | null;
  minuteRollupsDays: number | null;
  hourRollupsDays: number | null;
  eventsDays: number | null;
  /** the audit log: not telemetry, but deleted by the same bounded job */
  auditDays: number | null;
}

export interface RetentionOptions extends RetentionPolicy {
  intervalMs: number;
  /** rows deleted per transaction: short transactions, so a batch of telemetry never waits long */
  batchRows: number;
}

export const RETENTION_TARGETS = ['windows', 'minuteRollups', 'hourRollups', 'events', 'gaps', 'audit'] as const;
export type RetentionTarget = (typeof RETENTION_TARGETS)[number];
export type RetentionCounts = Record<RetentionTarget, number>;

const DAY_MS = 86_400_000;

const zero = (): RetentionCounts => ({ windows: 0, minuteRollups: 0, hourRollups: 0, events: 0, gaps: 0, audit: 0 });

/** A bounded delete of rows older than a cutoff, oldest first (each by an index on its time column). */
function boundedDelete(table: string, key: string, time: string): string {
  return `DELETE FROM ${table} WHERE (${key}) IN (SELECT ${key} FROM ${table} WHERE ${time} < @cutoff ORDER BY ${time} LIMIT @limit)`;
}

/**
 * Deletes telemetry past its retention, every `intervalMs`, in transactions
 * of at most `batchRows` rows with a turn of the event loop between them.
 * Raw windows go by the control plane's receive time (device clocks may be
 * wrong); rollups by their bucket, events by their time; gaps with the raw
 * windows they describe; audit log entries by their time.
 */
export class RetentionJob {
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<RetentionCounts> | null = null;
  private stopping = false;
  readonly stats = { runs: 0, batches: 0, deleted: zero() };
  private readonly steps: Record<RetentionTarget, (cutoff: number, limit: number) => number>;

  constructor(
    db: Db,
    private readonly opts: RetentionOptions,
    private readonly log: Logger,
  ) {
    const del = (sql: string) => {
      const stmt = db.prepare(sql);
      return (cutoff: number, limit: number) => stmt.run({ cutoff, limit }).changes;
    };
    this.steps = {
      windows: del(boundedDelete('telemetry_windows', 'device_id, seq', 'received_at')),
      minuteRollups: del(boundedDelete('telemetry_rollups_minute', 'device_id, bucket_start', 'bucket_start')),
      hourRollups: del(boundedDelete('telemetry_rollups_hour', 'device_id, bucket_start', 'bucket_start')),
      events: del(boundedDelete('detection_events', 'device_id, seq', 'at')),
      gaps: del(boundedDelete('telemetry_gaps', 'device_id, first_seq', 'detected_at')),
      audit: del(boundedDelete('audit_log', 'id', 'at')),
    };
  }

  start(): void {
    if (this.timer) return;
    this.stopping = false;
    this.timer = setInterval(() => {
      this.run().catch((err: unknown) => this.log.error({ err }, 'telemetry retention failed'));
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a run in progress to finish its current batch. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stopping = true;
    await this.current?.catch(() => undefined);
  }

  /** One pass over every kind of telemetry; a pass already running is joined, not doubled. */
  run(now = Date.now()): Promise<RetentionCounts> {
    this.current ??= this.pass(now).finally(() => (this.current = null));
    return this.current;
  }

  private days(target: RetentionTarget): number | null {
    const o = this.opts;
    switch (target) {
      case 'windows':
      case 'gaps':
        return o.rawWindowsDays;
      case 'minuteRollups':
        return o.minuteRollupsDays;
      case 'hourRollups':
        return o.hourRollupsDays;
      case 'events':
        return o.eventsDays;
      case 'audit':
        return o.auditDays;
    }
  }

  private async pass(now: number): Promise<RetentionCounts> {
    const deleted = zero();
    for (const target of RETENTION_TARGETS) {
      const days = this.days(target);
      if (days === null) continue;
      const cutoff = now - days * DAY_MS;
      for (;;) {
        if (this.stopping) return deleted;
        const n = this.steps[target](cutoff, this.opts.batchRows);
        this.stats.batches++;
        deleted[target] += n;
        this.stats.deleted[target] += n;
        if (n < this.opts.batchRows) break;
        // Let the ingest's batches and the API in between.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    this.stats.runs++;
    if (Object.values(deleted).some((n) => n > 0)) this.log.info({ deleted }, 'rows past retention deleted');
    return deleted;
  }
}
