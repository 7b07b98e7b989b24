import type { Db } from './database.js';
import type { ModelSummary } from './model-version-store.js';

export interface VersionPageKey {
  createdAt: number;
  id: number;
}

/** Keyset pages of the registry for the API: models by name, a model's versions by (created_at, id). */
export class ModelVersionPages {
  private readonly modelsStmt;
  private readonly versionIdsStmt;

  constructor(db: Db) {
    this.modelsStmt = db.prepare(
      `SELECT name, COUNT(*) AS versions,
              (SELECT version FROM model_versions m2 WHERE m2.name = m.name ORDER BY created_at DESC, id DESC LIMIT 1) AS latestVersion,
              MAX(created_at) AS latestCreatedAt
       FROM model_versions m
       WHERE (@after IS NULL OR name > @after)
       GROUP BY name ORDER BY name LIMIT @limit`,
    );
    this.versionIdsStmt = db.prepare(
      `SELECT id FROM model_versions
       WHERE name = @name AND (@afterAt IS NULL OR created_at > @afterAt OR (created_at = @afterAt AND id > @afterId))
       ORDER BY created_at, id LIMIT @limit`,
    );
  }

  models(after: string | null, limit: number): ModelSummary[] {
    return this.modelsStmt.all({ after, limit }) as ModelSummary[];
  }

  /** Row ids of one model's versions, oldest first; records come from ModelVersionStore.byId. */
  versionIds(name: string, after: VersionPageKey | null, limit: number): number[] {
    const rows = this.versionIdsStmt.all({ name, afterAt: after?.createdAt ?? null, afterId: after?.id ?? null, limit }) as { id: number }[];
    return rows.map((r) => r.id);
  }
}
