import { writeTransaction, type Db } from './database.js';

export interface DeviceLabels {
  tags: string[];
  groups: string[];
}

/**
 * Which devices an operation (a rollout stage, a query) is for. Each list
 * given narrows the selection: `ids` and `groups` keep devices in any of them
 * (so an empty list keeps none), `tags` keeps devices that have every tag
 * (so an empty list keeps all). Revoked devices are never selected.
 */
export interface DeviceSelector {
  ids?: readonly string[];
  tags?: readonly string[];
  groups?: readonly string[];
}

/** Tags and groups of devices (`device_tags`, `device_groups`), and selection by them. */
export class DeviceLabelStore {
  private readonly tagsStmt;
  private readonly groupsStmt;
  private readonly clearTagsStmt;
  private readonly clearGroupsStmt;
  private readonly addTagStmt;
  private readonly addGroupStmt;

  constructor(private readonly db: Db) {
    this.tagsStmt = db.prepare('SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag').pluck();
    this.groupsStmt = db.prepare('SELECT group_name FROM device_groups WHERE device_id = ? ORDER BY group_name').pluck();
    this.clearTagsStmt = db.prepare('DELETE FROM device_tags WHERE device_id = ?');
    this.clearGroupsStmt = db.prepare('DELETE FROM device_groups WHERE device_id = ?');
    this.addTagStmt = db.prepare('INSERT OR IGNORE INTO device_tags (device_id, tag) VALUES (?, ?)');
    this.addGroupStmt = db.prepare('INSERT OR IGNORE INTO device_groups (device_id, group_name) VALUES (?, ?)');
  }

  get(deviceId: string): DeviceLabels {
    return { tags: this.tagsStmt.all(deviceId) as string[], groups: this.groupsStmt.all(deviceId) as string[] };
  }

  /** Replaces both sets; the device row must exist. */
  replace(deviceId: string, labels: DeviceLabels): void {
    writeTransaction(this.db, () => {
      this.clearTagsStmt.run(deviceId);
      this.clearGroupsStmt.run(deviceId);
      this.add(deviceId, labels);
    })();
  }

  /** Adds to both sets, keeping what the device has. */
  add(deviceId: string, labels: Partial<DeviceLabels>): void {
    for (const tag of labels.tags ?? []) this.addTagStmt.run(deviceId, tag);
    for (const group of labels.groups ?? []) this.addGroupStmt.run(deviceId, group);
  }

  /** Ids of the devices the selector matches, in id order. */
  select(selector: DeviceSelector): string[] {
    const where = ['d.revoked_at IS NULL'];
    const params: unknown[] = [];
    if (selector.ids) {
      where.push('d.id IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(selector.ids));
    }
    if (selector.groups) {
      where.push('EXISTS (SELECT 1 FROM device_groups g WHERE g.device_id = d.id AND g.group_name IN (SELECT value FROM json_each(?)))');
      params.push(JSON.stringify(selector.groups));
    }
    const tags = [...new Set(selector.tags ?? [])];
    if (tags.length > 0) {
      where.push('(SELECT COUNT(*) FROM device_tags t WHERE t.device_id = d.id AND t.tag IN (SELECT value FROM json_each(?))) = ?');
      params.push(JSON.stringify(tags), tags.length);
    }
    return this.db.prepare(`SELECT d.id FROM devices d WHERE ${where.join(' AND ')} ORDER BY d.id`).pluck().all(...params) as string[];
  }
}
