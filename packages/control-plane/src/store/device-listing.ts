import type { Db } from './database.js';

export interface DeviceFilter {
  status?: string | undefined;
  tag?: string | undefined;
  group?: string | undefined;
  /** a prefix of the device id */
  idPrefix?: string | undefined;
}

/**
 * Pages of device ids in id order, filtered: keyset pagination (`id >
 * after`), so a device added or removed while a client pages neither
 * repeats nor shifts the rest. Ids only: records come from DeviceStore, the
 * one place that maps a device row.
 */
export class DeviceListing {
  private readonly stmt;

  constructor(db: Db) {
    // Every value is a bound parameter. The id prefix is compared with substr, not LIKE, so % _ and \ are
    // plain characters; `id >= @q` lets SQLite walk the primary key from the first possible match.
    this.stmt = db.prepare(
      `SELECT d.id FROM devices d
       WHERE (@after IS NULL OR d.id > @after)
         AND (@status IS NULL OR d.status = @status)
         AND (@q IS NULL OR (d.id >= @q AND substr(d.id, 1, length(@q)) = @q))
         AND (@tag IS NULL OR EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = @tag))
         AND (@grp IS NULL OR EXISTS (SELECT 1 FROM device_groups g WHERE g.device_id = d.id AND g.group_name = @grp))
       ORDER BY d.id LIMIT @limit`,
    );
  }

  page(filter: DeviceFilter, after: string | null, limit: number): string[] {
    const rows = this.stmt.all({
      after,
      status: filter.status ?? null,
      q: filter.idPrefix ?? null,
      tag: filter.tag ?? null,
      grp: filter.group ?? null,
      limit,
    }) as { id: string }[];
    return rows.map((r) => r.id);
  }
}
