import type { TelemetryWindow } from '@perch/shared';
import type { Db } from './database.js';

export interface StoredWindow {
  deviceId: string;
  seq: number;
  receivedAt: number;
  window: TelemetryWindow;
}

export interface ClassTotals {
  deviceId: string;
  since: number;
  windows: number;
  framesInferred: number;
  classCounts: Record<string, number>;
}

/** Telemetry windows, keyed by (device, seq) so a redelivered window is stored once. */
export class TelemetryStore {
  private readonly insertWindowStmt;

  constructor(private readonly db: Db) {
    this.insertWindowStmt = db.prepare(
      `INSERT OR IGNORE INTO telemetry_windows
         (device_id, seq, window_start, window_end, model_sha256, frames_inferred, payload_json, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /**
   * Stores one window; its rowid, or null when (device, seq) is already
   * stored. Runs inside the caller's batch transaction. Class counts stay in
   * the window's JSON and the rollups: a table of their own cost three more
   * B-tree inserts a window, each on another page of the device's.
   */
  insertWindow(w: TelemetryWindow, receivedAt: number, json = JSON.stringify(w)): number | null {
    let framesInferred = 0;
    for (const c of w.cameras) framesInferred += c.framesInferred;
    const res = this.insertWindowStmt.run(
      w.deviceId, w.seq, w.windowStart, w.windowEnd, w.model?.sha256 ?? null, framesInferred, json, receivedAt,
    );
    return res.changes > 0 ? Number(res.lastInsertRowid) : null;
  }

  recent(deviceId: string, limit: number): StoredWindow[] {
    const rows = this.db
      .prepare('SELECT seq, received_at, payload_json FROM telemetry_windows WHERE device_id = ? ORDER BY seq DESC LIMIT ?')
      .all(deviceId, limit) as { seq: number; received_at: number; payload_json: string }[];
    return rows.map((r) => ({ deviceId, seq: r.seq, receivedAt: r.received_at, window: JSON.parse(r.payload_json) as TelemetryWindow }));
  }

  classTotals(deviceId: string, since: number): ClassTotals {
    const agg = this.db
      .prepare('SELECT COUNT(*) AS windows, COALESCE(SUM(frames_inferred), 0) AS frames FROM telemetry_windows WHERE device_id = ? AND window_end >= ?')
      .get(deviceId, since) as { windows: number; frames: number };
    const rows = this.db
      .prepare(
        `SELECT counts.key AS label, SUM(counts.value) AS n
         FROM telemetry_windows w, json_each(w.payload_json, '$.cameras') cam, json_each(cam.value, '$.classCounts') counts
         WHERE w.device_id = ? AND w.window_end >= ? GROUP BY counts.key ORDER BY counts.key`,
      )
      .all(deviceId, since) as { label: string; n: number }[];
    return {
      deviceId,
      since,
      windows: agg.windows,
      framesInferred: agg.frames,
      classCounts: Object.fromEntries(rows.map((r) => [r.label, r.n])),
    };
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM telemetry_windows').get() as { n: number }).n;
  }

  /**
   * A keyset page of one device's windows, newest first: the `limit` with
   * seq below `beforeSeq` (null: from the newest). A range on the primary
   * key, so a deep page costs what the first does.
   */
  windowsBefore(deviceId: string, beforeSeq: number | null, limit: number): StoredWindow[] {
    // Above any seq (a JSON number), so the first page is the same range query.
    const before = beforeSeq ?? 9_223_372_036_854_775_807n;
    const rows = this.db
      .prepare('SELECT seq, received_at, payload_json FROM telemetry_windows WHERE device_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?')
      .all(deviceId, before, limit) as { seq: number; received_at: number; payload_json: string }[];
    return rows.map((r) => ({ deviceId, seq: r.seq, receivedAt: r.received_at, window: JSON.parse(r.payload_json) as TelemetryWindow }));
  }
}
