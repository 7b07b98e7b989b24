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
  private readonly insertCountStmt;

  constructor(private readonly db: Db) {
    this.insertWindowStmt = db.prepare(
      `INSERT OR IGNORE INTO telemetry_windows
         (device_id, seq, window_start, window_end, model_sha256, frames_inferred, payload_json, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertCountStmt = db.prepare(
      'INSERT OR IGNORE INTO telemetry_class_counts (device_id, seq, camera_id, label, count, window_end) VALUES (?, ?, ?, ?, ?, ?)',
    );
  }

  /**
   * Stores one window and its class counts; false when (device, seq) is
   * already stored. Runs inside the caller's batch transaction.
   */
  insertWindow(w: TelemetryWindow, receivedAt: number): boolean {
    let framesInferred = 0;
    for (const c of w.cameras) framesInferred += c.framesInferred;
    const res = this.insertWindowStmt.run(
      w.deviceId, w.seq, w.windowStart, w.windowEnd, w.model?.sha256 ?? null, framesInferred, JSON.stringify(w), receivedAt,
    );
    if (res.changes === 0) return false;
    for (const cam of w.cameras) {
      for (const [label, count] of Object.entries(cam.classCounts)) {
        this.insertCountStmt.run(w.deviceId, w.seq, cam.cameraId, label, count, w.windowEnd);
      }
    }
    return true;
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
      .prepare('SELECT label, SUM(count) AS n FROM telemetry_class_counts WHERE device_id = ? AND window_end >= ? GROUP BY label ORDER BY label')
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
}
