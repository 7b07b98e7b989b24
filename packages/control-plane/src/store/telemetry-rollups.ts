import type { Histogram, HistogramSpecId, TelemetryWindow } from '@perch/shared';
import type Database from 'better-sqlite3';
import { addFrameTotals } from '../telemetry/frame-totals.js';
import { addLabelCounts, emptyMap, type LabelCounts } from '../telemetry/label-counts.js';
import type { Db } from './database.js';

export const ROLLUP_RESOLUTIONS = ['minute', 'hour'] as const;
export type RollupResolution = (typeof ROLLUP_RESOLUTIONS)[number];

export const BUCKET_MS: Record<RollupResolution, number> = { minute: 60_000, hour: 3_600_000 };
const TABLES: Record<RollupResolution, string> = { minute: 'telemetry_rollups_minute', hour: 'telemetry_rollups_hour' };

/** Latency bins as stored: per histogram spec, so windows of older agents (v1) never mix with v2 bins. */
type LatencyBins = Record<string, { counts: number[]; sum: number }>;

export interface Rollup {
  bucketStart: number;
  windows: number;
  framesReceived: number;
  framesInferred: number;
  /** frames replaced by a newer one before inference took them (skipped) */
  framesDropped: number;
  inferenceErrors: number;
  classCounts: LabelCounts;
  /** all cameras' latency histograms merged, one per spec seen */
  latency: Histogram[];
  /** champion against challenger (shadow mode): sampled frames both answered, and of those the ones whose top-1 labels agreed */
  shadow: { framesCompared: number; agreed: number };
}

export interface GroupRollup extends Rollup {
  /** group members with data in this bucket */
  devices: number;
}

interface RollupRow {
  bucket_start: number;
  devices?: number;
  windows: number;
  frames_received: number;
  frames_inferred: number;
  frames_dropped: number;
  inference_errors: number;
  class_counts_json: string;
  latency_json: string;
  shadow_compared: number;
  shadow_agreed: number;
}

function addLatency(into: LatencyBins, from: LatencyBins): LatencyBins {
  for (const [spec, h] of Object.entries(from)) {
    const have = into[spec];
    if (!have) {
      into[spec] = { counts: [...h.counts], sum: h.sum };
      continue;
    }
    for (let i = 0; i < h.counts.length; i++) have.counts[i] = (have.counts[i] ?? 0) + (h.counts[i] ?? 0);
    have.sum += h.sum;
  }
  return into;
}

const parseCounts = (json: string): LabelCounts => addLabelCounts(emptyMap(), JSON.parse(json) as LabelCounts);
const parseLatency = (json: string): LatencyBins => addLatency(emptyMap(), JSON.parse(json) as LatencyBins);

/**
 * SQL functions the group queries use: they add the members' JSON maps in
 * SQLite itself. Registered per connection.
 */
function registerFunctions(db: Db): void {
  db.aggregate('perch_counts_sum', {
    start: () => emptyMap<number>(),
    step: (acc: LabelCounts, json: unknown) => addLabelCounts(acc, JSON.parse(String(json)) as LabelCounts),
    result: (acc: LabelCounts) => JSON.stringify(acc),
  });
  db.aggregate('perch_latency_sum', {
    start: () => emptyMap<LatencyBins[string]>(),
    step: (acc: LatencyBins, json: unknown) => addLatency(acc, JSON.parse(String(json)) as LatencyBins),
    result: (acc: LatencyBins) => JSON.stringify(acc),
  });
}

interface Contribution {
  resolution: RollupResolution;
  deviceId: string;
  bucketStart: number;
  windows: number;
  framesReceived: number;
  framesInferred: number;
  framesDropped: number;
  inferenceErrors: number;
  classCounts: LabelCounts;
  latency: LatencyBins;
  shadowCompared: number;
  shadowAgreed: number;
}

/**
 * What one batch adds to the rollups, summed per (device, bucket) in memory
 * first: a device's windows of one minute cost one upsert, not one each.
 */
export class RollupBatch {
  private readonly rows = new Map<string, Contribution>();

  /** Counts a new window in the minute and the hour its windowStart falls in. */
  add(deviceId: string, w: TelemetryWindow): void {
    for (const resolution of ROLLUP_RESOLUTIONS) {
      const bucketStart = w.windowStart - (w.windowStart % BUCKET_MS[resolution]);
      const key = `${resolution}\u0000${deviceId}\u0000${bucketStart}`;
      let c = this.rows.get(key);
      if (!c) {
        c = { resolution, deviceId, bucketStart, windows: 0, framesReceived: 0, framesInferred: 0, framesDropped: 0, inferenceErrors: 0, classCounts: emptyMap(), latency: emptyMap(), shadowCompared: 0, shadowAgreed: 0 };
        this.rows.set(key, c);
      }
      c.windows++;
      c.shadowCompared += w.shadow?.framesCompared ?? 0;
      c.shadowAgreed += w.shadow?.agreed ?? 0;
      for (const cam of w.cameras) {
        addFrameTotals(c, cam);
        addLatency(c.latency, { [cam.latencyMs.spec]: cam.latencyMs });
      }
    }
  }

  get size(): number {
    return this.rows.size;
  }

  /** @internal */
  contributions(): IterableIterator<Contribution> {
    return this.rows.values();
  }
}

/** `from` added into `into` (same device and bucket); returns `into`. */
function addContribution(into: Contribution, from: Contribution): Contribution {
  into.windows += from.windows;
  into.shadowCompared += from.shadowCompared;
  into.shadowAgreed += from.shadowAgreed;
  addFrameTotals(into, from);
  addLatency(into.latency, from.latency);
  return into;
}

function toRollup(r: RollupRow): Rollup {
  const latency = Object.entries(parseLatency(r.latency_json)).map(([spec, h]) => ({ spec: spec as HistogramSpecId, counts: h.counts, sum: h.sum }));
  return {
    bucketStart: r.bucket_start,
    windows: r.windows,
    framesReceived: r.frames_received,
    framesInferred: r.frames_inferred,
    framesDropped: r.frames_dropped,
    inferenceErrors: r.inference_errors,
    classCounts: { ...parseCounts(r.class_counts_json) },
    latency,
    shadow: { framesCompared: r.shadow_compared, agreed: r.shadow_agreed },
  };
}

const COLUMNS = 'windows, frames_received, frames_inferred, frames_dropped, inference_errors, class_counts_json, latency_json, shadow_compared, shadow_agreed';

/**
 * Per-minute and per-hour rollups per device, maintained inside the ingest
 * transaction. Group rollups are computed by query from the device rollups
 * joined with `device_groups`, not maintained: a window then costs two
 * upserts whatever groups its device is in, and a device moved to another
 * group shows its history there at once. The query reads members x buckets
 * rows, so the API bounds the span asked for.
 */
export class TelemetryRollups {
  private readonly insert: Record<RollupResolution, Database.Statement>;
  private readonly update: Record<RollupResolution, Database.Statement>;
  private readonly load: Record<RollupResolution, Database.Statement>;
  /**
   * The rows of each resolution's newest bucket as last written, so a window
   * adds to them in memory and writes the sums (no JSON read back and merged
   * in SQL for every window). Rows of older buckets are read when a late
   * window needs them. Cleared when a batch's transaction fails.
   */
  private readonly open: Record<RollupResolution, Map<string, Contribution>> = { minute: new Map(), hour: new Map() };
  private readonly newestBucket: Record<RollupResolution, number> = { minute: 0, hour: 0 };
  private readonly deviceRange: Record<RollupResolution, Database.Statement>;
  private readonly groupRange: Record<RollupResolution, Database.Statement>;
  private readonly groupSizeStmt;

  constructor(db: Db) {
    registerFunctions(db);
    const each = <T>(f: (table: string) => T): Record<RollupResolution, T> => ({ minute: f(TABLES.minute), hour: f(TABLES.hour) });
    this.insert = each((t) =>
      db.prepare(
        `INSERT INTO ${t} (device_id, bucket_start, ${COLUMNS})
         VALUES (@deviceId, @bucketStart, @windows, @framesReceived, @framesInferred, @framesDropped, @inferenceErrors, @classCounts, @latency, @shadowCompared, @shadowAgreed)`,
      ),
    );
    this.update = each((t) =>
      db.prepare(
        `UPDATE ${t} SET windows = @windows, frames_received = @framesReceived, frames_inferred = @framesInferred, frames_dropped = @framesDropped,
           inference_errors = @inferenceErrors, class_counts_json = @classCounts, latency_json = @latency,
           shadow_compared = @shadowCompared, shadow_agreed = @shadowAgreed
         WHERE device_id = @deviceId AND bucket_start = @bucketStart`,
      ),
    );
    this.load = each((t) => db.prepare(`SELECT bucket_start, ${COLUMNS} FROM ${t} WHERE device_id = ? AND bucket_start = ?`));
    this.deviceRange = each((t) =>
      db.prepare(`SELECT bucket_start, ${COLUMNS} FROM ${t} WHERE device_id = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start`),
    );
    this.groupRange = each((t) =>
      db.prepare(
        `SELECT r.bucket_start, COUNT(*) AS devices, SUM(r.windows) AS windows, SUM(r.frames_received) AS frames_received,
                SUM(r.frames_inferred) AS frames_inferred, SUM(r.frames_dropped) AS frames_dropped,
                SUM(r.inference_errors) AS inference_errors, SUM(r.shadow_compared) AS shadow_compared, SUM(r.shadow_agreed) AS shadow_agreed,
                perch_counts_sum(r.class_counts_json) AS class_counts_json, perch_latency_sum(r.latency_json) AS latency_json
         FROM device_groups g JOIN ${t} r ON r.device_id = g.device_id
         WHERE g.group_name = ? AND r.bucket_start >= ? AND r.bucket_start < ?
         GROUP BY r.bucket_start ORDER BY r.bucket_start`,
      ),
    );
    this.groupSizeStmt = db.prepare('SELECT COUNT(*) FROM device_groups WHERE group_name = ?').pluck();
  }

  /** Adds a batch's contributions; call inside the ingest transaction (and forget() when it fails). */
  write(batch: RollupBatch): void {
    for (const c of batch.contributions()) {
      const open = this.open[c.resolution];
      const key = `${c.deviceId}\u0000${c.bucketStart}`;
      const row = open.get(key) ?? this.stored(c.resolution, c.deviceId, c.bucketStart);
      const sums = row ? addContribution(row, c) : c;
      (row ? this.update : this.insert)[c.resolution].run({
        deviceId: c.deviceId,
        bucketStart: c.bucketStart,
        windows: sums.windows,
        framesReceived: sums.framesReceived,
        framesInferred: sums.framesInferred,
        framesDropped: sums.framesDropped,
        inferenceErrors: sums.inferenceErrors,
        shadowCompared: sums.shadowCompared,
        shadowAgreed: sums.shadowAgreed,
        classCounts: JSON.stringify(sums.classCounts),
        latency: JSON.stringify(sums.latency),
      });
      if (c.bucketStart >= this.newestBucket[c.resolution]) this.keepOpen(c.resolution, key, sums);
    }
  }

  /** After a failed transaction: what is in memory may be ahead of the database. */
  forget(): void {
    for (const r of ROLLUP_RESOLUTIONS) this.open[r].clear();
  }

  private stored(resolution: RollupResolution, deviceId: string, bucketStart: number): Contribution | null {
    const r = this.load[resolution].get(deviceId, bucketStart) as RollupRow | undefined;
    if (!r) return null;
    return {
      resolution,
      deviceId,
      bucketStart,
      windows: r.windows,
      framesReceived: r.frames_received,
      framesInferred: r.frames_inferred,
      framesDropped: r.frames_dropped,
      inferenceErrors: r.inference_errors,
      classCounts: parseCounts(r.class_counts_json),
      latency: parseLatency(r.latency_json),
      shadowCompared: r.shadow_compared,
      shadowAgreed: r.shadow_agreed,
    };
  }

  // Only the newest bucket stays in memory: a fleet's rows of one minute and one hour, not its history.
  private keepOpen(resolution: RollupResolution, key: string, row: Contribution): void {
    const open = this.open[resolution];
    if (row.bucketStart > this.newestBucket[resolution]) {
      this.newestBucket[resolution] = row.bucketStart;
      for (const [k, r] of open) if (r.bucketStart < row.bucketStart) open.delete(k);
    }
    open.set(key, row);
  }

  /** A device's rollups with bucketStart in [from, to), oldest first. */
  forDevice(deviceId: string, resolution: RollupResolution, from: number, to: number): Rollup[] {
    return (this.deviceRange[resolution].all(deviceId, from, to) as RollupRow[]).map(toRollup);
  }

  /** A group's rollups: its members' rollups added bucket by bucket. */
  forGroup(group: string, resolution: RollupResolution, from: number, to: number): GroupRollup[] {
    return (this.groupRange[resolution].all(group, from, to) as Required<RollupRow>[]).map((r) => ({ ...toRollup(r), devices: r.devices }));
  }

  groupSize(group: string): number {
    return this.groupSizeStmt.get(group) as number;
  }
}
