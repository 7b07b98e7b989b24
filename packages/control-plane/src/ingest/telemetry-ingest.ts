import type { Logger } from 'pino';
import { MessageMalformed, MessageNotKept, type RawDeviceMessageHandler } from '../bus/device-message-dispatcher.js';
import type { ReceivedWindow } from './received-telemetry.js';
import type { BatchResult } from './telemetry-batch-writer.js';

/** Where batches go: the batch writer in this thread (TelemetryBatchWriter) or on its own (TelemetryWriterThread). */
export interface BatchSink {
  /** decodes the batch and commits what decodes in one transaction (the rest comes back rejected), or throws and commits nothing */
  writeReceived(batch: readonly ReceivedWindow[]): BatchResult | Promise<BatchResult>;
  /** writes what committed batches changed beyond their windows (rollups, sequences, last seen) */
  flushState?(): void | Promise<void>;
  close?(): Promise<void>;
}

/** A received window waiting for its batch to commit. */
export interface QueuedWindow extends ReceivedWindow {
  /** the broker acknowledged it already (the bus path): one that cannot be written is lost, not sent again */
  acknowledged: boolean;
  /**
   * called once it is committed (no argument) or will not be (MessageNotKept;
   * MessageMalformed when it does not decode): the embedded broker
   * acknowledges the device then, or not
   */
  done?: ((err?: Error) => void) | undefined;
}

export interface TelemetryIngestOptions {
  /** flush when this many windows wait */
  maxBatch: number;
  /** a window waits at most this long for more to share its batch (while none is being written) */
  flushMs: number;
  /**
   * windows kept for another try while writes fail (a full disk); beyond
   * this the oldest are given up: not acknowledged (the device sends them
   * again) when they came through the broker's intake, else lost and counted
   */
  maxPending: number;
}

export const TELEMETRY_INGEST_DEFAULTS: TelemetryIngestOptions = { maxBatch: 500, flushMs: 100, maxPending: 50_000 };

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
  /** acknowledged windows (through the bus) that could not be written and were dropped */
  lost: number;
  /** unacknowledged windows (through the broker's intake) given up: their devices send them again */
  notKept: number;
  /** windows that did not decode (malformed JSON, not the contract, another device's): dropped */
  malformed: number;
  lastBatchAt: number | null;
}

/** What each committed batch was, for metrics: its windows that were written (not those that did not decode). */
export type BatchListener = (batch: readonly QueuedWindow[], result: BatchResult, committedAt: number) => void;

/**
 * Batches handed to the sink before the first is answered: with two, the
 * writer thread has the next batch while this thread settles the last one
 * and gathers the one after (with one, it idled for each turnaround).
 */
const MAX_IN_FLIGHT = 2;

/**
 * Telemetry windows are written in batched transactions (one commit per
 * batch, not per message); (device, seq) makes a redelivered window a no-op.
 * Batches are sent in order and committed in order; what arrives while they
 * are written makes the next batch, so batches grow with the load.
 */
export class TelemetryIngest {
  private pending: QueuedWindow[] = [];
  /** the wait for a batch to fill (flushMs) */
  private timer: NodeJS.Timeout | null = null;
  /** after a failed write: the wait before the next try (nothing is sent meanwhile) */
  private retryTimer: NodeJS.Timeout | null = null;
  private inFlight = 0;
  /** windows at the head of `pending` that came back from failed batches, oldest first */
  private requeued = 0;
  private idleWaiters: ((written: boolean) => void)[] = [];
  private readonly listeners: BatchListener[] = [];
  private readonly arrivals: ((window: ReceivedWindow) => void)[] = [];
  readonly stats: IngestStats = { received: 0, inserted: 0, duplicates: 0, late: 0, missingOpened: 0, batches: 0, failedBatches: 0, lost: 0, notKept: 0, malformed: 0, lastBatchAt: null };

  constructor(
    private readonly sink: BatchSink,
    private readonly log: Logger,
    private readonly opts: TelemetryIngestOptions = TELEMETRY_INGEST_DEFAULTS,
  ) {}

  /** Settles when the window is committed; through the embedded broker's intake, the device's PUBACK goes then. */
  handler(): RawDeviceMessageHandler {
    return {
      kind: 'telemetry',
      raw: true,
      handle: (deviceId, payload, acknowledged) =>
        new Promise<void>((resolve, reject) => this.queue({ deviceId, payload, receivedAt: Date.now(), acknowledged, done: (err) => (err ? reject(err) : resolve()) })),
    };
  }

  /** Windows accepted and not yet committed. */
  get queued(): number {
    return this.pending.length;
  }

  onBatch(listener: BatchListener): void {
    this.listeners.push(listener);
  }

  /** Each window as it arrives, before it waits for its batch (how late windows reach the control plane, apart from the batching). */
  onArrival(listener: (window: ReceivedWindow) => void): void {
    this.arrivals.push(listener);
  }

  /** `acknowledged`: the device has its PUBACK already (by default when nobody waits for `done`). */
  enqueue(window: ReceivedWindow, done?: (err?: Error) => void, acknowledged = done === undefined): void {
    this.queue({ ...window, acknowledged, done });
  }

  private queue(q: QueuedWindow): void {
    this.stats.received++;
    for (const l of this.arrivals) l(q);
    this.pending.push(q);
    if (this.pending.length >= this.opts.maxBatch) this.pump();
    else
      this.timer ??= setTimeout(() => {
        this.timer = null;
        this.pump();
      }, this.opts.flushMs);
  }

  /**
   * Writes what waits now, and resolves once nothing is in flight and either
   * nothing waits (true) or a write failed (false: its windows wait for the
   * next try). A flush also retries at once after a failure. `state`: the
   * rollups, sequences and last seen are written too (readers see them now).
   */
  async flush({ state = true } = {}): Promise<boolean> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.pump();
    const written = await new Promise<boolean>((resolve) => {
      this.idleWaiters.push(resolve);
      this.settleWaiters();
    });
    if (!written || !state) return written;
    try {
      await this.sink.flushState?.();
      return true;
    } catch (err) {
      this.log.error({ err }, 'telemetry rollups, sequences and last seen could not be written now; the writer tries again');
      return false;
    }
  }

  /** Sends batches while windows wait and the sink has room, unless waiting to retry a failed write. */
  private pump(): void {
    while (this.retryTimer === null && this.pending.length > 0 && this.inFlight < MAX_IN_FLIGHT) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
      this.requeued = Math.max(0, this.requeued - batch.length);
      this.inFlight++;
      void this.write(batch).then(() => {
        this.inFlight--;
        // What arrived during the write goes now, while the other batch in flight keeps the writer busy.
        this.pump();
        this.settleWaiters();
      });
    }
  }

  private settleWaiters(): void {
    const failing = this.retryTimer !== null;
    if (this.inFlight > 0 || (this.pending.length > 0 && !failing)) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve(!failing);
  }

  private async write(batch: QueuedWindow[]): Promise<void> {
    let result: BatchResult;
    try {
      result = await this.sink.writeReceived(batch);
    } catch (err) {
      this.failed(batch, err);
      return;
    }
    const committedAt = Date.now();
    const s = this.stats;
    s.inserted += result.inserted;
    s.duplicates += result.duplicates;
    s.late += result.late;
    s.missingOpened += result.missingOpened;
    s.batches++;
    s.lastBatchAt = committedAt;
    s.malformed += result.rejected.length;
    const written = result.rejected.length === 0 ? batch : this.settleRejected(batch, result);
    for (const p of written) p.done?.();
    for (const l of this.listeners) l(written, result, committedAt);
    this.log.debug({ windows: batch.length, inserted: result.inserted, devices: result.devices }, 'telemetry batch written');
  }

  /** Settles the windows of a batch that did not decode (MessageMalformed); returns the others, which were written. */
  private settleRejected(batch: readonly QueuedWindow[], result: BatchResult): QueuedWindow[] {
    const reasons = new Map(result.rejected.map((r) => [r.index, r.reason]));
    return batch.filter((p, i) => {
      const reason = reasons.get(i);
      if (reason === undefined) return true;
      if (p.done) p.done(new MessageMalformed(reason));
      else this.log.warn({ deviceId: p.deviceId, reason }, 'dropped telemetry window');
      return false;
    });
  }

  /** Writes what is queued: nothing accepted is lost on shutdown (unless the database refuses it). */
  async stop(): Promise<void> {
    // The sink's close writes the rest.
    if (!(await this.flush({ state: false }))) {
      const given = this.pending;
      this.pending = [];
      const lost = this.giveUp(given, 'the control plane stopped before the window could be written');
      this.log.error({ windows: given.length, lost }, 'telemetry windows could not be written at shutdown; those not yet acknowledged will be sent again');
    }
    for (const t of [this.timer, this.retryTimer]) if (t) clearTimeout(t);
    this.timer = this.retryTimer = null;
    await this.sink.close?.();
  }

  /** Windows that will not be written: those with a waiting device are not acknowledged, the others are lost. Returns how many were lost. */
  private giveUp(windows: readonly QueuedWindow[], why: string): number {
    let lost = 0;
    for (const p of windows) {
      if (p.acknowledged) {
        lost++;
        p.done?.();
      } else {
        this.stats.notKept++;
        p.done?.(new MessageNotKept(why));
      }
    }
    this.stats.lost += lost;
    return lost;
  }

  // A failed write (disk full, I/O error) keeps its windows for the next try instead of throwing
  // into the dispatcher or, from the timer, out of the process.
  private failed(batch: QueuedWindow[], err: unknown): void {
    this.stats.failedBatches++;
    // Back in arrival order: after what earlier failed batches returned (batches fail in the order sent).
    this.pending.splice(this.requeued, 0, ...batch);
    this.requeued += batch.length;
    const over = this.pending.length - this.opts.maxPending;
    if (over > 0) {
      this.giveUp(this.pending.splice(0, over), 'telemetry backlog over its bound while writes fail');
      this.requeued = Math.max(0, this.requeued - over);
    }
    this.log.error({ err, windows: batch.length, queued: this.pending.length, lost: this.stats.lost, notKept: this.stats.notKept }, 'telemetry batch could not be written; retrying');
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = null;
      this.pump();
      this.settleWaiters();
    }, Math.max(this.opts.flushMs, 1000));
  }
}
