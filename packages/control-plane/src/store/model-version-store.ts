import type { ModelMetadata, ModelTarget } from '@perch/shared';
import type { Db } from './database.js';

export interface ModelVersionRecord {
  id: number;
  name: string;
  version: string;
  sha256: string;
  length: number;
  metadata: ModelMetadata;
  target: ModelTarget;
  createdAt: number;
}

interface Row {
  id: number;
  name: string;
  version: string;
  sha256: string;
  length: number;
  metadata_json: string;
  target_json: string;
  created_at: number;
}

function toRecord(r: Row): ModelVersionRecord {
  return {
    id: r.id,
    name: r.name,
    version: r.version,
    sha256: r.sha256,
    length: r.length,
    metadata: JSON.parse(r.metadata_json) as ModelMetadata,
    target: JSON.parse(r.target_json) as ModelTarget,
    createdAt: r.created_at,
  };
}

export interface ModelSummary {
  name: string;
  versions: number;
  latestVersion: string;
  latestCreatedAt: number;
}

/** Registered model versions and their target descriptions (as TUF's targets.json lists them). */
export class ModelVersionStore {
  constructor(private readonly db: Db) {}

  insert(v: Omit<ModelVersionRecord, 'id'>): ModelVersionRecord {
    const info = this.db
      .prepare(
        `INSERT INTO model_versions (name, version, sha256, length, metadata_json, target_json, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(v.name, v.version, v.sha256, v.length, JSON.stringify(v.metadata), JSON.stringify(v.target), v.createdAt);
    return { ...v, id: Number(info.lastInsertRowid) };
  }

  get(name: string, version: string): ModelVersionRecord | null {
    const row = this.db.prepare('SELECT * FROM model_versions WHERE name = ? AND version = ?').get(name, version) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  byId(id: number): ModelVersionRecord | null {
    const row = this.db.prepare('SELECT * FROM model_versions WHERE id = ?').get(id) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  hasSha256(sha256: string): boolean {
    return this.db.prepare('SELECT 1 FROM model_versions WHERE sha256 = ? LIMIT 1').get(sha256) !== undefined;
  }

  /** Whether `sha256` is a registered version's model file or its chunk manifest: the artifacts devices may fetch. */
  hasArtifact(sha256: string): boolean {
    if (this.hasSha256(sha256)) return true;
    const row = this.db.prepare("SELECT 1 FROM model_versions WHERE json_extract(target_json, '$.custom.chunkManifest.sha256') = ? LIMIT 1").get(sha256);
    return row !== undefined;
  }

  all(): ModelVersionRecord[] {
    return (this.db.prepare('SELECT * FROM model_versions ORDER BY id').all() as Row[]).map(toRecord);
  }

  versions(name: string): ModelVersionRecord[] {
    return (this.db.prepare('SELECT * FROM model_versions WHERE name = ? ORDER BY created_at, id').all(name) as Row[]).map(toRecord);
  }

  models(): ModelSummary[] {
    const rows = this.db
      .prepare(
        `SELECT name, COUNT(*) AS versions,
                (SELECT version FROM model_versions m2 WHERE m2.name = m.name ORDER BY created_at DESC, id DESC LIMIT 1) AS latestVersion,
                MAX(created_at) AS latestCreatedAt
         FROM model_versions m GROUP BY name ORDER BY name`,
      )
      .all() as ModelSummary[];
    return rows;
  }
}
