import { telemetryWindowSchema, type TelemetryWindow } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { BatchResult, PendingWindow, TelemetryBatchWriter } from './telemetry-batch-writer.js';

export interface TelemetryIngestOptions {
  /** flush when this many windows wait */
  maxBatch: number;
  /** flush at least this often */
  flushMs: number;
  /** windows kept for another try while writes fail (a full disk); beyond this the oldest are dropped and counted */
  maxPending: number;
}

export const TELEMETRY_INGEST_DEFAULTS: TelemetryIngestOptions = { maxBatch: 500, flushMs: 200, maxPending: 50_000 };

export interface IngestStats {
  received: number;
  inserted: number;
  duplicates: number;
  /** windows that filled a gap */
  late: number;
  /** seqs found missing when a later window arrived */
  missingOpened: number;
  batches: number;
  failedBatches: number;
  /** accepted windows that could not be written and were dropped */
  lost: number;
  lastBatchAt: number | null;
}

/** What each committed batch was, for metrics. */
export type BatchListener = (batch: readonly PendingWindow[], result: BatchResult, committedAt: number) => void;

/**
 * Telemetry windows are written in batched transactions (one commit per
 * batch, not per message); (device, seq) makes a redelivered window a no-op.
 */
export class TelemetryIngest {
  private pending: PendingWindow[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners: BatchListener[] = [];
  readonly stats: IngestStats = { received: 0, inserted: 0, duplicates: 0, late: 0, missingOpened: 0, batches: 0, failedBatches: 0, lost: 0, lastBatchAt: null };

  constructor(
    private readonly writer: TelemetryBatchWriter,
    private readonly log: Logger,
    private readonly opts: TelemetryIngestOptions = TELEMETRY_INGEST_DEFAULTS,
  ) {}

  handler() {
    return defineHandler({
      kind: 'telemetry',
      schema: telemetryWindowSchema,
      handle: (_deviceId, window) => this.enqueue(window),
    });
  }

  /** Windows accepted and not yet committed. */
  get queued(): number {
    return this.pending.length;
  }

  onBatch(listener: BatchListener): void {
    this.listeners.push(listener);
  }

  enqueue(window: TelemetryWindow, receivedAt = Date.now()): void {
    this.stats.received++;
    this.pending.push({ window, receivedAt });
    if (this.pending.length >= this.opts.maxBatch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.opts.flushMs);
  }

  /** Writes what waits, a batch at a time; false when a write failed (the windows wait for the next try). */
  flush(): boolean {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
      let result: BatchResult;
      try {
        result = this.writer.write(batch);
      } catch (err) {
        this.failed(batch, err);
        return false;
      }
      const committedAt = Date.now();
      const s = this.stats;
      s.inserted += result.inserted;
      s.duplicates += result.duplicates;
      s.late += result.late;
      s.missingOpened += result.missingOpened;
      s.batches++;
      s.lastBatchAt = committedAt;
      for (const l of this.listeners) l(batch, result, committedAt);
      this.log.debug({ windows: batch.length, inserted: result.inserted, devices: result.devices }, 'telemetry batch written');
    }
    return true;
  }

  /** Writes what is queued: nothing accepted is lost on shutdown (unless the database refuses it). */
  stop(): void {
    if (!this.flush()) {
      this.log.error({ windows: this.pending.length }, 'telemetry windows could not be written at shutdown; lost');
      this.stats.lost += this.pending.length;
      this.pending = [];
    }
  }

  // A failed write (disk full, I/O error) keeps its windows for the next try instead of throwing
  // into the dispatcher or, from the timer, out of the process.
  private failed(batch: PendingWindow[], err: unknown): void {
    this.stats.failedBatches++;
    this.pending = batch.concat(this.pending);
    const over = this.pending.length - this.opts.maxPending;
    if (over > 0) {
      this.pending.splice(0, over);
      this.stats.lost += over;
    }
    this.log.error({ err, windows: batch.length, queued: this.pending.length, lost: this.stats.lost }, 'telemetry batch could not be written; retrying');
    this.timer ??= setTimeout(() => this.flush(), Math.max(this.opts.flushMs, 1000));
  }
}
