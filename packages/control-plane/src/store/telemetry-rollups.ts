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

/** One rollup row's identity as a map key. */
export const rollupKey = (resolution: RollupResolution, deviceId: string, bucketStart: number): string => `${resolution}\u0000${deviceId}\u0000${bucketStart}`;

/** A rollup row's sums, or what some windows add to one. */
export interface Contribution {
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
  /** the newest window (its telemetry_windows rowid) counted */
  throughRowid: number;
}

/**
 * What one batch adds to the rollups, summed per (device, bucket) in memory
 * first: a device's windows of one minute cost one upsert, not one each.
 */
export class RollupBatch {
  private readonly rows = new Map<string, Contribution>();

  /** Counts a new window (stored as `rowid`) in the minute and the hour its windowStart falls in. */
  add(deviceId: string, w: TelemetryWindow, rowid: number): void {
    for (const resolution of ROLLUP_RESOLUTIONS) {
      const bucketStart = w.windowStart - (w.windowStart % BUCKET_MS[resolution]);
      const key = rollupKey(resolution, deviceId, bucketStart);
      let c = this.rows.get(key);
      if (!c) {
        c = emptyContribution(resolution, deviceId, bucketStart);
        this.rows.set(key, c);
      }
      c.windows++;
      c.throughRowid = Math.max(c.throughRowid, rowid);
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

  contributions(): IterableIterator<Contribution> {
    return this.rows.values();
  }
}

export function emptyContribution(resolution: RollupResolution, deviceId: string, bucketStart: number): Contribution {
  return { resolution, deviceId, bucketStart, windows: 0, framesReceived: 0, framesInferred: 0, framesDropped: 0, inferenceErrors: 0, classCounts: emptyMap(), latency: emptyMap(), shadowCompared: 0, shadowAgreed: 0, throughRowid: 0 };
}

/** `from` added into `into` (same device and bucket); returns `into`. */
export function addContribution(into: Contribution, from: Contribution): Contribution {
  into.windows += from.windows;
  into.throughRowid = Math.max(into.throughRowid, from.throughRowid);
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
 * Per-minute and per-hour rollups per device. The ingest sums windows into
 * them in memory and writes whole rows (deferred-telemetry-state.ts). Group
 * rollups are computed by query from the device rollups joined with
 * `device_groups`, not maintained: a window then costs the same whatever
 * groups its device is in, and a device moved to another group shows its
 * history there at once. The query reads members x buckets rows, so the API
 * bounds the span asked for.
 */
export class TelemetryRollups {
  private readonly saveStmt: Record<RollupResolution, Database.Statement>;
  private readonly load: Record<RollupResolution, Database.Statement>;
  private readonly deviceRange: Record<RollupResolution, Database.Statement>;
  private readonly groupRange: Record<RollupResolution, Database.Statement>;
  private readonly groupSizeStmt;

  constructor(db: Db) {
    registerFunctions(db);
    const each = <T>(f: (table: string) => T): Record<RollupResolution, T> => ({ minute: f(TABLES.minute), hour: f(TABLES.hour) });
    this.saveStmt = each((t) =>
      db.prepare(
        `INSERT INTO ${t} (device_id, bucket_start, ${COLUMNS}, through_rowid)
         VALUES (@deviceId, @bucketStart, @windows, @framesReceived, @framesInferred, @framesDropped, @inferenceErrors, @classCounts, @latency, @shadowCompared, @shadowAgreed, @throughRowid)
         ON CONFLICT (bucket_start, device_id) DO UPDATE SET windows = excluded.windows, frames_received = excluded.frames_received,
           frames_inferred = excluded.frames_inferred, frames_dropped = excluded.frames_dropped, inference_errors = excluded.inference_errors,
           class_counts_json = excluded.class_counts_json, latency_json = excluded.latency_json,
           shadow_compared = excluded.shadow_compared, shadow_agreed = excluded.shadow_agreed, through_rowid = excluded.through_rowid`,
      ),
    );
    this.load = each((t) => db.prepare(`SELECT bucket_start, ${COLUMNS}, through_rowid FROM ${t} WHERE bucket_start = ? AND device_id = ?`));
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

  /** Writes a row's sums as they are now (rows are whole in memory: no read, no merge in SQL). */
  save(c: Contribution): void {
    this.saveStmt[c.resolution].run({
      deviceId: c.deviceId,
      bucketStart: c.bucketStart,
      windows: c.windows,
      framesReceived: c.framesReceived,
      framesInferred: c.framesInferred,
      framesDropped: c.framesDropped,
      inferenceErrors: c.inferenceErrors,
      shadowCompared: c.shadowCompared,
      shadowAgreed: c.shadowAgreed,
      classCounts: JSON.stringify(c.classCounts),
      latency: JSON.stringify(c.latency),
      throughRowid: c.throughRowid,
    });
  }

  /** The stored row of a device and bucket, or null. */
  stored(resolution: RollupResolution, deviceId: string, bucketStart: number): Contribution | null {
    const r = this.load[resolution].get(bucketStart, deviceId) as (RollupRow & { through_rowid: number }) | undefined;
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
      throughRowid: r.through_rowid,
    };
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
