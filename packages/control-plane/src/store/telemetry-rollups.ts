import type { Histogram, HistogramSpecId, TelemetryWindow } from '@perch/shared';
import type Database from 'better-sqlite3';
import type { Db } from './database.js';

export const ROLLUP_RESOLUTIONS = ['minute', 'hour'] as const;
export type RollupResolution = (typeof ROLLUP_RESOLUTIONS)[number];

export const BUCKET_MS: Record<RollupResolution, number> = { minute: 60_000, hour: 3_600_000 };
const TABLES: Record<RollupResolution, string> = { minute: 'telemetry_rollups_minute', hour: 'telemetry_rollups_hour' };

/** Latency bins as stored: per histogram spec, so windows of older agents (v1) never mix with v2 bins. */
type LatencyBins = Record<string, { counts: number[]; sum: number }>;
type Counts = Record<string, number>;

export interface Rollup {
  bucketStart: number;
  windows: number;
  framesReceived: number;
  framesInferred: number;
  /** frames replaced by a newer one before inference took them (skipped) */
  framesDropped: number;
  inferenceErrors: number;
  classCounts: Counts;
  /** all cameras' latency histograms merged, one per spec seen */
  latency: Histogram[];
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
}

// Null-prototype maps: a label may be any string, "__proto__" included.
const dict = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

function addCounts(into: Counts, from: Counts): Counts {
  // for-in over JSON.parse output: own keys only (plain objects), and quicker than Object.entries on this path.
  for (const k in from) into[k] = (into[k] ?? 0) + (from[k] as number);
  return into;
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

const parseCounts = (json: string): Counts => addCounts(dict(), JSON.parse(json) as Counts);
const parseLatency = (json: string): LatencyBins => addLatency(dict(), JSON.parse(json) as LatencyBins);

/** Class counts and latency bins of two rollups added; exported for the tests of the math. */
export const mergeCountsJson = (a: string, b: string): string => JSON.stringify(addCounts(parseCounts(a), JSON.parse(b) as Counts));
// Spec keys are histogram spec ids, never "__proto__": the parsed object can take the sum in place.
export const mergeLatencyJson = (a: string, b: string): string => JSON.stringify(addLatency(JSON.parse(a) as LatencyBins, JSON.parse(b) as LatencyBins));

/**
 * SQL functions the rollup upserts and group queries use: adding JSON maps
 * in SQLite itself keeps an upsert one statement (no read-modify-write).
 * Registered per connection; only the control plane's connection writes.
 */
function registerFunctions(db: Db): void {
  db.function('perch_counts_add', { deterministic: true }, (a, b) => mergeCountsJson(String(a), String(b)));
  db.function('perch_latency_add', { deterministic: true }, (a, b) => mergeLatencyJson(String(a), String(b)));
  db.aggregate('perch_counts_sum', {
    start: () => dict<number>(),
    step: (acc: Counts, json: unknown) => addCounts(acc, JSON.parse(String(json)) as Counts),
    result: (acc: Counts) => JSON.stringify(acc),
  });
  db.aggregate('perch_latency_sum', {
    start: () => dict<LatencyBins[string]>(),
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
  classCounts: Counts;
  latency: LatencyBins;
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
        c = { resolution, deviceId, bucketStart, windows: 0, framesReceived: 0, framesInferred: 0, framesDropped: 0, inferenceErrors: 0, classCounts: dict(), latency: dict() };
        this.rows.set(key, c);
      }
      c.windows++;
      for (const cam of w.cameras) {
        c.framesReceived += cam.framesReceived;
        c.framesInferred += cam.framesInferred;
        c.framesDropped += cam.framesDropped;
        c.inferenceErrors += cam.inferenceErrors;
        addCounts(c.classCounts, cam.classCounts);
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
  };
}

const COLUMNS = 'windows, frames_received, frames_inferred, frames_dropped, inference_errors, class_counts_json, latency_json';

/**
 * Per-minute and per-hour rollups per device, maintained inside the ingest
 * transaction. Group rollups are computed by query from the device rollups
 * joined with `device_groups`, not maintained: a window then costs two
 * upserts whatever groups its device is in, and a device moved to another
 * group shows its history there at once. The query reads members x buckets
 * rows, so the API bounds the span asked for.
 */
export class TelemetryRollups {
  private readonly upsert: Record<RollupResolution, Database.Statement>;
  private readonly deviceRange: Record<RollupResolution, Database.Statement>;
  private readonly groupRange: Record<RollupResolution, Database.Statement>;
  private readonly groupSizeStmt;

  constructor(db: Db) {
    registerFunctions(db);
    const each = <T>(f: (table: string) => T): Record<RollupResolution, T> => ({ minute: f(TABLES.minute), hour: f(TABLES.hour) });
    this.upsert = each((t) =>
      db.prepare(
        `INSERT INTO ${t} (device_id, bucket_start, ${COLUMNS})
         VALUES (@deviceId, @bucketStart, @windows, @framesReceived, @framesInferred, @framesDropped, @inferenceErrors, @classCounts, @latency)
         ON CONFLICT (device_id, bucket_start) DO UPDATE SET
           windows = windows + excluded.windows,
           frames_received = frames_received + excluded.frames_received,
           frames_inferred = frames_inferred + excluded.frames_inferred,
           frames_dropped = frames_dropped + excluded.frames_dropped,
           inference_errors = inference_errors + excluded.inference_errors,
           class_counts_json = perch_counts_add(class_counts_json, excluded.class_counts_json),
           latency_json = perch_latency_add(latency_json, excluded.latency_json)`,
      ),
    );
    this.deviceRange = each((t) =>
      db.prepare(`SELECT bucket_start, ${COLUMNS} FROM ${t} WHERE device_id = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start`),
    );
    this.groupRange = each((t) =>
      db.prepare(
        `SELECT r.bucket_start, COUNT(*) AS devices, SUM(r.windows) AS windows, SUM(r.frames_received) AS frames_received,
                SUM(r.frames_inferred) AS frames_inferred, SUM(r.frames_dropped) AS frames_dropped,
                SUM(r.inference_errors) AS inference_errors,
                perch_counts_sum(r.class_counts_json) AS class_counts_json, perch_latency_sum(r.latency_json) AS latency_json
         FROM device_groups g JOIN ${t} r ON r.device_id = g.device_id
         WHERE g.group_name = ? AND r.bucket_start >= ? AND r.bucket_start < ?
         GROUP BY r.bucket_start ORDER BY r.bucket_start`,
      ),
    );
    this.groupSizeStmt = db.prepare('SELECT COUNT(*) FROM device_groups WHERE group_name = ?').pluck();
  }

  /** Adds a batch's contributions; call inside the ingest transaction. */
  write(batch: RollupBatch): void {
    for (const c of batch.contributions()) {
      this.upsert[c.resolution].run({
        deviceId: c.deviceId,
        bucketStart: c.bucketStart,
        windows: c.windows,
        framesReceived: c.framesReceived,
        framesInferred: c.framesInferred,
        framesDropped: c.framesDropped,
        inferenceErrors: c.inferenceErrors,
        classCounts: JSON.stringify(c.classCounts),
        latency: JSON.stringify(c.latency),
      });
    }
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
