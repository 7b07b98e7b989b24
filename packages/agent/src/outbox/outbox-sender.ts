import type { Logger } from '../log/logger.js';
import type { MqttConnection } from '../mqtt/connection.js';
import type { OutboxStore, StoredRecord } from './outbox-store.js';

/** After a publish fails on a live link, wait this long before resending from the oldest record. */
const RETRY_MS = 1000;

/**
 * Publishes the outbox's records at QoS 1 in id order, at most `inFlight`
 * unacknowledged at a time, and deletes each one only after its PUBACK.
 *
 * Each connection is an epoch. A disconnect ends it; the next connect starts
 * a new one from the oldest record still stored. Publishes of an old epoch
 * are not waited for (mqtt.js may still deliver them, or fail them when it
 * gives up), but their PUBACKs still delete: a record can go out twice after
 * a reconnect, never zero times, and ingestion is idempotent on (device, seq).
 */
export class OutboxSender {
  private epoch = 0;
  /** the highest id published in this epoch: records up to it are in flight */
  private cursor = 0;
  private inFlight = 0;
  private running = false;
  private readonly acked = new Set<number>();
  private ackFlush: NodeJS.Immediate | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly drainWaiters = new Set<(drained: boolean) => void>();
  private readonly onConnect = () => this.resume();
  private readonly onDisconnect = () => this.pause();

  constructor(
    private readonly store: OutboxStore,
    private readonly connection: MqttConnection,
    private readonly maxInFlight: number,
    private readonly log: Logger,
  ) {}

  /** Records with ids up to this one have been handed to the connection in this epoch. */
  get inFlightUpTo(): number {
    return this.cursor;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connection.on('connect', this.onConnect);
    this.connection.on('disconnect', this.onDisconnect);
    if (this.connection.connected) this.resume();
  }

  /** A record was added. */
  notify(): void {
    this.pump();
  }

  /**
   * Waits until every stored record is acknowledged, or `timeoutMs` passes.
   * Returns at once when the link is down: nothing would move.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.flushAcked();
    if (this.store.pending === 0) return true;
    if (!this.running || !this.connection.connected) return false;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.drainWaiters.delete(onDrained);
        resolve(ok);
      };
      const onDrained = (drained: boolean) => done(drained);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.drainWaiters.add(onDrained);
    });
  }

  /** Stops publishing; acknowledgements already received are written. */
  stop(): void {
    if (!this.running) return;
    this.flushAcked();
    this.running = false;
    this.epoch++;
    this.connection.off('connect', this.onConnect);
    this.connection.off('disconnect', this.onDisconnect);
    if (this.ackFlush) clearImmediate(this.ackFlush);
    this.ackFlush = null;
    this.clearRetry();
    for (const w of [...this.drainWaiters]) w(this.store.pending === 0);
  }

  /** Deletes acknowledged records (batched: one transaction per turn of the event loop). */
  flushAcked(): void {
    if (this.acked.size > 0) {
      const ids = [...this.acked];
      try {
        this.store.remove(ids);
        this.acked.clear();
      } catch (err) {
        // Kept and tried again with the next acknowledgement; meanwhile they only count as pending.
        this.log.warn({ err: (err as Error).message, records: ids.length }, 'could not delete acknowledged outbox records');
      }
    }
    if (this.store.pending === 0) for (const w of [...this.drainWaiters]) w(true);
  }

  private resume(): void {
    if (!this.running) return;
    this.flushAcked();
    this.clearRetry();
    this.epoch++;
    this.cursor = 0;
    this.inFlight = 0;
    this.pump();
  }

  private pause(): void {
    this.epoch++;
    this.cursor = 0;
    this.inFlight = 0;
  }

  private pump(): void {
    // A pending retry means the last epoch failed on a live link: wait for it.
    if (!this.running || !this.connection.connected || this.retryTimer) return;
    while (this.inFlight < this.maxInFlight) {
      let batch: StoredRecord[];
      try {
        batch = this.store.after(this.cursor, this.maxInFlight - this.inFlight);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'could not read the outbox');
        this.retry();
        return;
      }
      if (batch.length === 0) return;
      for (const rec of batch) {
        this.cursor = rec.id;
        // Acknowledged but not yet deleted (a failed delete): not worth a duplicate.
        if (this.acked.has(rec.id)) continue;
        this.inFlight++;
        this.send(rec, this.epoch);
      }
    }
  }

  private send(rec: StoredRecord, epoch: number): void {
    this.connection.publish(rec.kind, rec.payload, { qos: 1 }).then(
      () => {
        if (!this.running) return;
        this.acked.add(rec.id);
        this.ackFlush ??= setImmediate(() => {
          this.ackFlush = null;
          this.flushAcked();
        });
        if (epoch !== this.epoch) return;
        this.inFlight--;
        this.pump();
      },
      (err: unknown) => {
        if (!this.running || epoch !== this.epoch) return;
        this.log.warn({ id: rec.id, err: err instanceof Error ? err.message : String(err) }, 'outbox publish failed; resending from the oldest record');
        this.retry();
      },
    );
  }

  /** Ends the epoch now and starts a new one shortly if the link is still up (a reconnect starts one anyway). */
  private retry(): void {
    this.pause();
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.connection.connected) this.resume();
    }, RETRY_MS);
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
