import type { SignedDesiredState } from '@perch/shared';
import type { Db } from './database.js';

export interface DesiredStateRecord {
  deviceId: string;
  generation: number;
  modelVersionId: number | null;
  envelope: SignedDesiredState;
  updatedAt: number;
}

interface Row {
  device_id: string;
  generation: number;
  model_version_id: number | null;
  envelope_json: string;
  updated_at: number;
}

const toRecord = (r: Row): DesiredStateRecord => ({
  deviceId: r.device_id,
  generation: r.generation,
  modelVersionId: r.model_version_id,
  envelope: JSON.parse(r.envelope_json) as SignedDesiredState,
  updatedAt: r.updated_at,
});

/** The latest signed desired state of each device; the source of truth the broker's retained copy is rebuilt from. */
export class DesiredStateStore {
  constructor(private readonly db: Db) {}

  get(deviceId: string): DesiredStateRecord | null {
    const row = this.db.prepare('SELECT * FROM desired_states WHERE device_id = ?').get(deviceId) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  all(): DesiredStateRecord[] {
    return (this.db.prepare('SELECT * FROM desired_states ORDER BY device_id').all() as Row[]).map(toRecord);
  }

  put(rec: DesiredStateRecord): void {
    this.db
      .prepare(
        `INSERT INTO desired_states (device_id, generation, model_version_id, envelope_json, updated_at)
         VALUES (@deviceId, @generation, @modelVersionId, @envelope, @updatedAt)
         ON CONFLICT (device_id) DO UPDATE SET generation = excluded.generation,
           model_version_id = excluded.model_version_id, envelope_json = excluded.envelope_json, updated_at = excluded.updated_at`,
      )
      .run({ ...rec, envelope: JSON.stringify(rec.envelope) });
  }
}
