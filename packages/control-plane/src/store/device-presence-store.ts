import { writeTransaction, type Db } from './database.js';

/** The status reason of a device the presence sweeper marked offline: nothing heard for too long. */
export const SILENT_REASON = 'silent';

export interface PresenceCounts {
  total: number;
  online: number;
  offline: number;
  unknown: number;
  /** offline because nothing was heard, not because the device or its will message said so */
  silent: number;
}

/**
 * Last seen and silence, on the `devices` table: the writes the ingest makes
 * for every device in a batch, and the presence sweeper's.
 */
export class DevicePresenceStore {
  private readonly seenStmt;
  private readonly ensureStmt;
  private readonly silentCandidatesStmt;
  private readonly markSilentStmt;
  private readonly countsStmt;
  private readonly markSilentTx;

  constructor(db: Db) {
    // SET expressions all read the row as it was, so the two CASEs agree.
    this.seenStmt = db.prepare(
      `UPDATE devices SET
         last_seen = MAX(COALESCE(last_seen, 0), @at),
         first_seen = COALESCE(first_seen, @at),
         status = CASE WHEN status = 'offline' AND status_reason = '${SILENT_REASON}' THEN 'online' ELSE status END,
         status_reason = CASE WHEN status = 'offline' AND status_reason = '${SILENT_REASON}' THEN NULL ELSE status_reason END
       WHERE id = @id`,
    );
    this.ensureStmt = db.prepare('INSERT OR IGNORE INTO devices (id, created_at) VALUES (?, ?)');
    this.silentCandidatesStmt = db.prepare("SELECT id FROM devices WHERE status != 'offline' AND last_seen < ? ORDER BY id").pluck();
    this.markSilentStmt = db.prepare(
      `UPDATE devices SET status = 'offline', status_reason = '${SILENT_REASON}' WHERE id = ? AND status != 'offline' AND last_seen < ?`,
    );
    this.countsStmt = db.prepare(
      `SELECT COUNT(*) AS total,
              COALESCE(SUM(status = 'online'), 0) AS online,
              COALESCE(SUM(status = 'offline'), 0) AS offline,
              COALESCE(SUM(status = 'unknown'), 0) AS unknown,
              COALESCE(SUM(status = 'offline' AND status_reason = '${SILENT_REASON}'), 0) AS silent
       FROM devices`,
    );
    this.markSilentTx = writeTransaction(db, (ids: readonly string[], before: number) =>
      ids.filter((id) => this.markSilentStmt.run(id, before).changes > 0),
    );
  }

  /**
   * A message from the device arrived at `at`: last seen moves on, and a
   * device marked silent is online again. One statement for a known device.
   */
  markSeen(id: string, at: number): void {
    if (this.seenStmt.run({ id, at }).changes > 0) return;
    this.ensureStmt.run(id, at);
    this.seenStmt.run({ id, at });
  }

  /** Devices not offline that were last seen before `before`, by id. */
  silentSince(before: number): string[] {
    return this.silentCandidatesStmt.all(before) as string[];
  }

  /** Marks devices offline, reason 'silent', in one transaction, except any seen since `before`; returns those changed. */
  markSilent(ids: readonly string[], before: number): string[] {
    return this.markSilentTx(ids, before);
  }

  counts(): PresenceCounts {
    return this.countsStmt.get() as PresenceCounts;
  }
}
