import type { Db } from '../store/database.js';

/**
 * What a window's seq means for its device: `new` (above the highest stored),
 * `late` (fills a gap), `duplicate` (stored before, or pruned by retention).
 */
export type SeqVerdict = 'new' | 'late' | 'duplicate';

export interface GapRange {
  firstSeq: number;
  lastSeq: number;
  count: number;
  /** when the window after the range arrived (ms) */
  detectedAt: number;
  /** missing for longer than the grace period: the agent's outbox dropped it, or a crash skipped its number */
  confirmedLost: boolean;
}

export interface GapReport {
  deviceId: string;
  /** the highest seq stored; null before the first window */
  highestSeq: number | null;
  /** every seq from 0 up to this one is stored (or was, before retention); null when seq 0 itself is missing */
  contiguousSeq: number | null;
  missing: number;
  pending: number;
  confirmedLost: number;
  /** newest first, at most `limit` */
  ranges: GapRange[];
  truncated: boolean;
}

export interface GapTotals {
  devicesWithGaps: number;
  missing: number;
  confirmedLost: number;
}

interface GapRow {
  first_seq: number;
  last_seq: number;
  detected_at: number;
}

/**
 * One device's sequence inside one batch transaction. Agents number windows
 * 0, 1, 2, ... and keep counting across restarts, and their outbox replays in
 * order, so a seq above the highest + 1 opens a gap; a seq inside a gap is a
 * late window (a redelivery after reconnect) and closes its part of the gap.
 */
export class DeviceSequence {
  /** seqs reported missing by this batch, and seqs that filled a gap */
  opened = 0;
  late = 0;
  private dirty = false;

  constructor(
    private readonly detector: GapDetector,
    readonly deviceId: string,
    private highest: number | null,
  ) {}

  /**
   * Decides what `seq` is; `store` writes the window and says whether it
   * was new. Only windows found new by both are counted anywhere.
   */
  admit(seq: number, at: number, store: () => boolean): SeqVerdict {
    const h = this.highest;
    if (h === null || seq > h) {
      if (!store()) return 'duplicate';
      const from = h === null ? 0 : h + 1;
      if (seq > from) {
        this.detector.insertGap(this.deviceId, from, seq - 1, at);
        this.opened += seq - from;
      }
      this.highest = seq;
      this.dirty = true;
      return 'new';
    }
    const gap = this.detector.gapAt(this.deviceId, seq);
    // At or below the highest and in no gap: stored before, even if retention has deleted its row since.
    if (!gap || !store()) return 'duplicate';
    this.detector.fill(this.deviceId, gap, seq);
    this.late++;
    return 'late';
  }

  /** The highest seq this batch stored, or null when it stored none above the one before. */
  newHighest(): number | null {
    return this.dirty ? this.highest : null;
  }
}

/**
 * Per-device sequence tracking: the highest seq stored and the missing
 * ranges below it, persisted in `telemetry_sequences` and `telemetry_gaps`.
 * Gaps are written inside the ingest's batch transaction. The highest seqs
 * are kept in memory as committed (the ingest is their only writer; some
 * bytes per device), so the common case (the next seq) costs no query, and
 * are written to `telemetry_sequences` behind the windows
 * (deferred-telemetry-state.ts), which rebuilds them from the windows after
 * a crash.
 */
export class GapDetector {
  private readonly highest = new Map<string, number>();
  private readonly highestStmt;
  private readonly saveHighestStmt;
  private readonly gapAtStmt;
  private readonly insertGapStmt;
  private readonly deleteGapStmt;
  private readonly summaryStmt;
  private readonly rangesStmt;
  private readonly totalsStmt;

  constructor(
    db: Db,
    /** a gap older than this is reported as confirmed lost */
    readonly graceMs: number,
  ) {
    this.highestStmt = db.prepare('SELECT highest_seq FROM telemetry_sequences WHERE device_id = ?').pluck();
    this.saveHighestStmt = db.prepare(
      `INSERT INTO telemetry_sequences (device_id, highest_seq, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET highest_seq = MAX(highest_seq, excluded.highest_seq), updated_at = excluded.updated_at`,
    );
    this.gapAtStmt = db.prepare(
      'SELECT first_seq, last_seq, detected_at FROM telemetry_gaps WHERE device_id = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1',
    );
    this.insertGapStmt = db.prepare('INSERT INTO telemetry_gaps (device_id, first_seq, last_seq, detected_at) VALUES (?, ?, ?, ?)');
    this.deleteGapStmt = db.prepare('DELETE FROM telemetry_gaps WHERE device_id = ? AND first_seq = ?');
    this.summaryStmt = db.prepare(
      `SELECT COUNT(*) AS ranges, MIN(first_seq) AS lowest,
              COALESCE(SUM(last_seq - first_seq + 1), 0) AS missing,
              COALESCE(SUM(CASE WHEN detected_at <= @lostBefore THEN last_seq - first_seq + 1 ELSE 0 END), 0) AS lost
       FROM telemetry_gaps WHERE device_id = @deviceId`,
    );
    this.rangesStmt = db.prepare('SELECT first_seq, last_seq, detected_at FROM telemetry_gaps WHERE device_id = ? ORDER BY first_seq DESC LIMIT ?');
    this.totalsStmt = db.prepare(
      `SELECT COUNT(DISTINCT device_id) AS devices,
              COALESCE(SUM(last_seq - first_seq + 1), 0) AS missing,
              COALESCE(SUM(CASE WHEN detected_at <= ? THEN last_seq - first_seq + 1 ELSE 0 END), 0) AS lost
       FROM telemetry_gaps`,
    );
  }

  /** Starts a device's part of a batch; call inside the batch transaction. */
  begin(deviceId: string): DeviceSequence {
    const highest = this.highest.get(deviceId) ?? (this.highestStmt.get(deviceId) as number | undefined);
    return new DeviceSequence(this, deviceId, highest ?? null);
  }

  /** A batch that stored `highest` for the device has committed. */
  committed(deviceId: string, highest: number): void {
    const known = this.highest.get(deviceId) ?? (this.highestStmt.get(deviceId) as number | undefined) ?? -1;
    this.highest.set(deviceId, Math.max(known, highest));
  }

  /** @internal the gap holding `seq`, if any */
  gapAt(deviceId: string, seq: number): GapRow | undefined {
    const row = this.gapAtStmt.get(deviceId, seq) as GapRow | undefined;
    return row && row.last_seq >= seq ? row : undefined;
  }

  /** @internal */
  insertGap(deviceId: string, first: number, last: number, at: number): void {
    this.insertGapStmt.run(deviceId, first, last, at);
  }

  /** @internal splits the gap around `seq`; the rest keeps its detection time */
  fill(deviceId: string, gap: GapRow, seq: number): void {
    this.deleteGapStmt.run(deviceId, gap.first_seq);
    if (gap.first_seq < seq) this.insertGapStmt.run(deviceId, gap.first_seq, seq - 1, gap.detected_at);
    if (seq < gap.last_seq) this.insertGapStmt.run(deviceId, seq + 1, gap.last_seq, gap.detected_at);
  }

  /** The highest committed seq in memory, if the device sent any since the start. */
  committedHighest(deviceId: string): number | undefined {
    return this.highest.get(deviceId);
  }

  /** Writes a device's highest seq (never lowers it). */
  saveHighest(deviceId: string, highest: number, at: number): void {
    this.saveHighestStmt.run(deviceId, highest, at);
  }

  report(deviceId: string, now: number, limit = 100): GapReport {
    const lostBefore = now - this.graceMs;
    const highest = (this.highestStmt.get(deviceId) as number | undefined) ?? null;
    const s = this.summaryStmt.get({ deviceId, lostBefore }) as { ranges: number; lowest: number | null; missing: number; lost: number };
    const rows = this.rangesStmt.all(deviceId, limit) as GapRow[];
    const contiguousSeq = s.lowest === null ? highest : s.lowest === 0 ? null : s.lowest - 1;
    return {
      deviceId,
      highestSeq: highest,
      contiguousSeq,
      missing: s.missing,
      pending: s.missing - s.lost,
      confirmedLost: s.lost,
      ranges: rows.map((r) => ({
        firstSeq: r.first_seq,
        lastSeq: r.last_seq,
        count: r.last_seq - r.first_seq + 1,
        detectedAt: r.detected_at,
        confirmedLost: r.detected_at <= lostBefore,
      })),
      truncated: s.ranges > rows.length,
    };
  }

  totals(now: number): GapTotals {
    const t = this.totalsStmt.get(now - this.graceMs) as { devices: number; missing: number; lost: number };
    return { devicesWithGaps: t.devices, missing: t.missing, confirmedLost: t.lost };
  }
}
