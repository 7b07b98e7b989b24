import type { TelemetryWindow } from '@perch/shared';
import { writeTransaction, type Db } from '../store/database.js';
import type { DevicePresenceStore } from '../store/device-presence-store.js';
import { addContribution, emptyContribution, RollupBatch, rollupKey, type Contribution, type TelemetryRollups } from '../store/telemetry-rollups.js';
import type { GapDetector } from '../telemetry/gap-detector.js';

export interface DeferredStateOptions {
  /** how often (ms) what the committed windows changed is written */
  flushMs: number;
  /** rows a transaction of that write holds: batches of windows are written between them */
  chunkRows: number;
}

export const DEFERRED_STATE_DEFAULTS: DeferredStateOptions = { flushMs: 5000, chunkRows: 2000 };

/** Where the state says what went wrong or was done at start: the control plane's logger, or a bridge to it from the writer thread. */
export interface StateLog {
  error(fields: { err: unknown; left: number }, msg: string): void;
  info(fields: { windows: number; after: number }, msg: string): void;
}

/** What a committed batch of windows changed, beyond the windows and gaps it wrote. */
export interface BatchChanges {
  /** per device: the highest seq it stored (null: none above the one before) and when it was last heard */
  devices: Map<string, { highest: number | null; lastSeen: number }>;
  rollup: RollupBatch;
  /** the newest window it stored (telemetry_windows rowid); 0 when it stored none */
  lastRowid: number;
}

/** The cycle under way: what was dirty when it began, in key order, and the windows it will have counted. */
interface Cycle {
  devices: string[];
  rows: Contribution[];
  next: number;
  throughRowid: number;
}

/** Positions [from, to) of a cycle: its devices first, then its rows. */
function part(cycle: Cycle, from: number, to: number): { devices: string[]; rows: Contribution[] } {
  const n = cycle.devices.length;
  return { devices: cycle.devices.slice(Math.min(from, n), Math.min(to, n)), rows: cycle.rows.slice(Math.max(0, from - n), Math.max(0, to - n)) };
}

// Bucket first: a bucket's rows of the whole fleet lie together in the table (migration 11).
const byTableOrder = (a: Contribution, b: Contribution): number =>
  a.resolution < b.resolution ? -1 : a.resolution > b.resolution ? 1 : a.bucketStart - b.bucketStart || (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0);

/**
 * Rollups, highest seqs and last seen, kept in memory as the committed
 * windows make them and written every `flushMs`, in key order, a chunk of
 * rows a transaction. Written with every batch they cost a row on a page of
 * each device's in four tables, every batch: at 10,000 devices most of the
 * writer's time and WAL. Written every few seconds in key order, a page
 * holds the rows of many devices and is written once.
 *
 * Nothing is lost in a crash: a window is committed with its batch, and
 * `telemetry_state_watermark` names the newest window whose changes are all
 * written. At start, the windows after it are counted again: a rollup row
 * names the newest window it counts (through_rowid), so each is added once;
 * highest seq and last seen only ever grow.
 *
 * What readers see (rollups, a device's highest seq and last seen) is up to
 * `flushMs` behind the windows; `flushAll` writes everything now.
 */
export class DeferredTelemetryState {
  /** rollup rows in memory, as sums: every dirty one, and the newest bucket's of each resolution */
  private readonly rows = new Map<string, Contribution>();
  private dirtyRows = new Set<string>();
  /** last seen of devices not yet written */
  private readonly lastSeen = new Map<string, number>();
  private dirtyDevices = new Set<string>();
  private readonly newestBucket = { minute: 0, hour: 0 };
  /** every window up to this rowid is counted in memory */
  private countedRowid: number;
  private cycle: Cycle | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stepping: NodeJS.Immediate | null = null;
  private readonly writeChunk;
  private readonly watermarkStmt;
  private readonly saveWatermarkStmt;
  private readonly afterWatermarkStmt;

  constructor(
    db: Db,
    private readonly gaps: GapDetector,
    private readonly rollups: TelemetryRollups,
    private readonly presence: DevicePresenceStore,
    private readonly opts: DeferredStateOptions = DEFERRED_STATE_DEFAULTS,
    private readonly log?: StateLog,
  ) {
    this.watermarkStmt = db.prepare('SELECT through_rowid FROM telemetry_state_watermark WHERE id = 1').pluck();
    this.saveWatermarkStmt = db.prepare('UPDATE telemetry_state_watermark SET through_rowid = MAX(through_rowid, ?) WHERE id = 1');
    this.afterWatermarkStmt = db.prepare('SELECT rowid, device_id, seq, received_at, payload_json FROM telemetry_windows WHERE rowid > ? ORDER BY rowid');
    this.writeChunk = writeTransaction(db, (devices: readonly string[], rows: readonly Contribution[], watermark: number | null) => {
      for (const id of devices) {
        const seen = this.lastSeen.get(id);
        if (seen === undefined) continue;
        const highest = this.gaps.committedHighest(id);
        if (highest !== undefined) this.gaps.saveHighest(id, highest, seen);
        this.presence.markSeen(id, seen);
      }
      for (const row of rows) this.rollups.save(row);
      if (watermark !== null) this.saveWatermarkStmt.run(watermark);
    });
    this.countedRowid = this.watermark();
    this.recover();
  }

  /** Counts a batch that has committed. */
  apply(changes: BatchChanges): void {
    for (const [id, d] of changes.devices) {
      if (d.highest !== null) this.gaps.committed(id, d.highest);
      this.lastSeen.set(id, Math.max(this.lastSeen.get(id) ?? 0, d.lastSeen));
      this.dirtyDevices.add(id);
    }
    for (const c of changes.rollup.contributions()) this.add(c);
    this.countedRowid = Math.max(this.countedRowid, changes.lastRowid);
    this.timer ??= setInterval(() => this.beginCycle(), this.opts.flushMs).unref();
  }

  /** Writes everything now (the ongoing cycle, then the rest); throws what the database threw. */
  flushAll(): void {
    this.cancelStep();
    if (!this.cycle) this.startCycle();
    while (this.cycle) {
      const failed = this.step();
      if (failed) throw failed.error;
      if (!this.cycle && (this.dirtyDevices.size > 0 || this.dirtyRows.size > 0)) this.startCycle();
    }
  }

  /** Stops the timer and writes everything it can: what the database refuses now is counted again at the next start. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      this.flushAll();
    } catch {
      // Logged by the failed step; the windows are committed, and the watermark is behind them.
    }
  }

  private watermark(): number {
    return (this.watermarkStmt.get() as number | undefined) ?? 0;
  }

  // After a crash, the windows committed after the watermark are counted again, then written.
  private recover(): void {
    let n = 0;
    for (const r of this.afterWatermarkStmt.iterate(this.countedRowid) as IterableIterator<{ rowid: number; device_id: string; seq: number; received_at: number; payload_json: string }>) {
      const window = JSON.parse(r.payload_json) as TelemetryWindow;
      const rollup = new RollupBatch();
      rollup.add(r.device_id, window, r.rowid);
      this.apply({ devices: new Map([[r.device_id, { highest: r.seq, lastSeen: r.received_at }]]), rollup, lastRowid: r.rowid });
      n++;
    }
    if (n === 0) return;
    this.log?.info({ windows: n, after: this.watermark() }, 'telemetry state counted again from the windows committed after its last write');
    this.flushAll();
  }

  private add(c: Contribution): void {
    const key = rollupKey(c.resolution, c.deviceId, c.bucketStart);
    let row = this.rows.get(key);
    if (!row) {
      row = this.rollups.stored(c.resolution, c.deviceId, c.bucketStart) ?? emptyContribution(c.resolution, c.deviceId, c.bucketStart);
      this.rows.set(key, row);
    }
    // A row written before a crash may count this window already (counted again from the watermark).
    if (c.throughRowid <= row.throughRowid) return;
    addContribution(row, c);
    this.dirtyRows.add(key);
    if (c.bucketStart > this.newestBucket[c.resolution]) this.newestBucket[c.resolution] = c.bucketStart;
  }

  private beginCycle(): void {
    if (this.cycle) return;
    if (this.dirtyDevices.size === 0 && this.dirtyRows.size === 0) return;
    this.startCycle();
    this.scheduleStep();
  }

  private startCycle(): void {
    const rows: Contribution[] = [];
    for (const key of this.dirtyRows) {
      const row = this.rows.get(key);
      if (row) rows.push(row);
    }
    rows.sort(byTableOrder);
    this.cycle = { devices: [...this.dirtyDevices].sort(), rows, next: 0, throughRowid: this.countedRowid };
    this.dirtyDevices = new Set();
    this.dirtyRows = new Set();
  }

  private scheduleStep(): void {
    this.stepping = setImmediate(() => {
      this.stepping = null;
      if (!this.step() && this.cycle) this.scheduleStep();
    });
  }

  private cancelStep(): void {
    if (this.stepping) clearImmediate(this.stepping);
    this.stepping = null;
  }

  /** Writes the next chunk of the cycle; what the database threw when it refused it (the cycle's rest is dirty again). */
  private step(): { error: unknown } | null {
    const cycle = this.cycle;
    if (!cycle) return null;
    const total = cycle.devices.length + cycle.rows.length;
    const from = cycle.next;
    const to = Math.min(total, from + this.opts.chunkRows);
    const { devices, rows } = part(cycle, from, to);
    const last = to === total;
    try {
      this.writeChunk(devices, rows, last ? cycle.throughRowid : null);
    } catch (error) {
      this.log?.error({ err: error, left: total - from }, 'telemetry rollups, sequences and last seen could not be written; trying again at the next interval');
      const rest = part(cycle, from, total);
      for (const id of rest.devices) this.dirtyDevices.add(id);
      for (const row of rest.rows) this.dirtyRows.add(rollupKey(row.resolution, row.deviceId, row.bucketStart));
      this.cycle = null;
      return { error };
    }
    for (const id of devices) if (!this.dirtyDevices.has(id)) this.lastSeen.delete(id);
    cycle.next = to;
    if (last) {
      this.cycle = null;
      this.evict();
    }
    return null;
  }

  // Written rows of older buckets leave memory; a late window reads its row back.
  private evict(): void {
    for (const [key, row] of this.rows) if (row.bucketStart < this.newestBucket[row.resolution] && !this.dirtyRows.has(key)) this.rows.delete(key);
  }
}
