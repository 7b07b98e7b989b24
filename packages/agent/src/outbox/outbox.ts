import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { detectionEventSchema, encodeJson, formatZodError, telemetryWindowSchema, type DetectionEvent, type TelemetryWindow } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import type { MqttConnection } from '../mqtt/connection.js';
import { OutboxSender } from './outbox-sender.js';
import { OUTBOX_KINDS, OutboxStore, type AddResult, type DropPolicy, type OutboxKind } from './outbox-store.js';

export { OUTBOX_KINDS, DROP_POLICIES, type AddResult as EnqueueResult, type DropPolicy, type OutboxKind, type RejectReason } from './outbox-store.js';

/** What each kind of record carries. */
export interface OutboxPayloads {
  telemetry: TelemetryWindow;
  events: DetectionEvent;
}

export interface OutboxOptions {
  deviceId: string;
  dataDir: string;
  maxBytes: number;
  maxRecords?: number | undefined;
  dropPolicy: DropPolicy;
  /** unacknowledged QoS 1 publishes at a time */
  inFlight: number;
  /** how long stop() waits for the broker to acknowledge what is stored */
  flushTimeoutMs: number;
  /** tests only: SQLite's page limit, to fill the "disk" for real (see OutboxStore) */
  maxPageCount?: number | undefined;
  /** how often a file that could not be opened is tried again, on the next record (default 10 s) */
  reopenIntervalMs?: number | undefined;
}

/** The telemetry window's `outbox` field. */
export interface OutboxWindowStats {
  pending: number;
  droppedInWindow: number;
  droppedTotal: number;
}

/** Thrown for a caller's mistake (an invalid record, use while stopped), never for storage trouble. */
export class OutboxError extends Error {
  override readonly name = 'OutboxError';
}

const schemas = { telemetry: telemetryWindowSchema, events: detectionEventSchema } as const;
/** At most one warning per this long about drops; the counts travel in every window anyway. */
const DROP_LOG_INTERVAL_MS = 10_000;
const REOPEN_INTERVAL_MS = 10_000;

export const OUTBOX_FILE = 'outbox.db';

/**
 * Store and forward: telemetry windows and detection events are written to
 * a local SQLite file (`dataDir/outbox.db`) before anything else happens to
 * them, and published at QoS 1, in order, whenever the broker is reachable.
 * A record is *accepted* when enqueue() returns `accepted: true`: from then on
 * neither a broker outage nor a crash or power cut loses it; only the drop
 * policy of the bounded file can remove it unsent, and what it discards is
 * counted, persisted and reported in every telemetry window.
 */
export class Outbox {
  private running = false;
  private store: OutboxStore | null = null;
  private sender: OutboxSender | null = null;
  /** why the file could not be opened, and when that was last tried */
  private openFailure: { at: number; message: string } | null = null;
  /** records dropped while there was no file to count them in; added to it once it opens */
  private droppedUnstored = 0;
  /** the file's count as last seen, for the window statistics while it is closed */
  private storedDropped = 0;
  private reportedDropped = 0;
  private dropLog = { at: 0, unlogged: 0 };

  constructor(
    private readonly opts: OutboxOptions,
    private readonly connection: MqttConnection,
    private readonly log: Logger,
  ) {
    // The config schema checks these too; the class is also used on its own.
    if (!(opts.maxBytes > 0)) throw new RangeError(`outbox maxBytes must be positive, got ${opts.maxBytes}`);
    if (!Number.isInteger(opts.inFlight) || opts.inFlight < 1) throw new RangeError(`outbox inFlight must be a positive integer, got ${opts.inFlight}`);
    if (!(opts.flushTimeoutMs >= 0)) throw new RangeError(`outbox flushTimeoutMs must not be negative, got ${opts.flushTimeoutMs}`);
  }

  get file(): string {
    return join(this.opts.dataDir, OUTBOX_FILE);
  }

  get started(): boolean {
    return this.running;
  }

  /**
   * Opens the file and starts sending whenever the connection is up. A file
   * that cannot be opened (a disk full at boot, a permission) does not stop
   * the agent: records are dropped and counted, and opening is tried again.
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  /**
   * Validates a record against the contract and stores it durably. Returns
   * whether it was accepted; storage trouble (a full disk) is applied as the
   * drop policy and counted, never thrown. Throws OutboxError for an invalid
   * record or when the outbox is not started.
   */
  enqueue<K extends OutboxKind>(kind: K, payload: OutboxPayloads[K]): AddResult {
    if (!this.running) throw new OutboxError('outbox is not started');
    if (!OUTBOX_KINDS.includes(kind)) throw new OutboxError(`unknown outbox record kind ${String(kind)}`);
    // Checked on the way in: a bug here must not sit in the outbox and then reach ingestion.
    const parsed = schemas[kind].safeParse(payload);
    if (!parsed.success) throw new OutboxError(`invalid ${kind} record: ${formatZodError(parsed.error)}`);
    if (parsed.data.deviceId !== this.opts.deviceId) {
      throw new OutboxError(`${kind} record names device ${parsed.data.deviceId}, this agent is ${this.opts.deviceId}`);
    }
    if (!this.store && (Date.now() - (this.openFailure?.at ?? 0) < (this.opts.reopenIntervalMs ?? REOPEN_INTERVAL_MS) || !this.open())) {
      this.droppedUnstored++;
      const error = this.openFailure?.message ?? 'outbox file not open';
      this.noteDrops(1, kind, `outbox: ${kind} record dropped`, 'storage-error', error);
      return { accepted: false, reason: 'storage-error', error };
    }
    const { store, sender } = this;
    if (!store || !sender) throw new OutboxError('outbox is not open');
    // Acknowledged records go first, so drop-oldest never counts a delivered record as dropped.
    sender.flushAcked();
    const result = store.add(kind, encodeJson(parsed.data), sender.inFlightUpTo);
    if (result.accepted) {
      sender.notify();
      if (result.droppedOlder > 0) this.noteDrops(result.droppedOlder, kind, 'outbox full: dropped the oldest records', result.cause, result.error);
    } else {
      this.noteDrops(1, kind, `outbox: ${kind} record dropped`, result.reason, result.error);
    }
    return result;
  }

  /**
   * Counters for the window being closed: records waiting, and drops in this
   * window and since the file was created. Each call starts a new window.
   */
  takeWindowStats(): OutboxWindowStats {
    const total = this.droppedTotal();
    const stats = { pending: this.store?.pending ?? 0, droppedInWindow: total - this.reportedDropped, droppedTotal: total };
    this.reportedDropped = total;
    return stats;
  }

  get stats(): { pending: number; pendingBytes: number; droppedTotal: number } {
    return { pending: this.store?.pending ?? 0, pendingBytes: this.store?.pendingBytes ?? 0, droppedTotal: this.droppedTotal() };
  }

  /**
   * Waits up to flushTimeoutMs for the broker to acknowledge what is stored
   * (when the link is up), then closes the file. What is left is sent after
   * the next start.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    const { store, sender } = this;
    const flushed = sender ? await sender.drain(this.opts.flushTimeoutMs) : false;
    this.running = false;
    sender?.stop();
    const pending = store?.pending ?? 0;
    this.storedDropped = store?.droppedTotal ?? this.storedDropped;
    this.store = null;
    this.sender = null;
    store?.close();
    this.log.info({ flushed, pending, droppedTotal: this.droppedTotal() }, 'outbox closed');
  }

  private droppedTotal(): number {
    return (this.store?.droppedTotal ?? this.storedDropped) + this.droppedUnstored;
  }

  private open(): boolean {
    let store: OutboxStore;
    try {
      mkdirSync(this.opts.dataDir, { recursive: true });
      store = OutboxStore.open(this.file, this.opts, this.log);
    } catch (err) {
      const message = (err as Error).message;
      if (!this.openFailure) this.log.error({ err: message, file: this.file }, 'outbox file cannot be opened; records are dropped and counted until it can');
      this.openFailure = { at: Date.now(), message };
      return false;
    }
    // Drops from earlier runs were reported by those runs' windows, not this window's.
    this.reportedDropped += store.droppedTotal - this.storedDropped;
    if (this.droppedUnstored > 0) {
      store.countDropped(this.droppedUnstored);
      this.droppedUnstored = 0;
    }
    this.store = store;
    this.openFailure = null;
    this.sender = new OutboxSender(store, this.connection, this.opts.inFlight, this.log);
    this.sender.start();
    this.log.info({ pending: store.pending, bytes: store.pendingBytes, droppedTotal: store.droppedTotal }, 'outbox open');
    return true;
  }

  private noteDrops(n: number, kind: OutboxKind, msg: string, cause: string | undefined, err: string | undefined): void {
    this.dropLog.unlogged += n;
    const now = Date.now();
    if (now - this.dropLog.at < DROP_LOG_INTERVAL_MS) return;
    this.log.warn({ kind, cause, dropped: this.dropLog.unlogged, droppedTotal: this.droppedTotal(), policy: this.opts.dropPolicy, err }, msg);
    this.dropLog = { at: now, unlogged: 0 };
  }
}
