import type { Db } from './database.js';

export interface ClaimTokenRecord {
  id: string;
  name: string;
  /** hex SHA-256 of the token; the token itself is shown once, at creation */
  tokenSha256: string;
  /** null: unlimited */
  maxUses: number | null;
  uses: number;
  /** ms since epoch; null: never */
  expiresAt: number | null;
  /** given to every device that claims with it */
  tags: string[];
  groups: string[];
  createdAt: number;
  revokedAt: number | null;
}

interface Row {
  id: string;
  name: string;
  token_sha256: string;
  max_uses: number | null;
  uses: number;
  expires_at: number | null;
  tags_json: string;
  groups_json: string;
  created_at: number;
  revoked_at: number | null;
}

const toRecord = (r: Row): ClaimTokenRecord => ({
  id: r.id,
  name: r.name,
  tokenSha256: r.token_sha256,
  maxUses: r.max_uses,
  uses: r.uses,
  expiresAt: r.expires_at,
  tags: JSON.parse(r.tags_json) as string[],
  groups: JSON.parse(r.groups_json) as string[],
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

/** Claim tokens: fleet provisioning secrets a box ships with, looked up by their hash. */
export class ClaimTokenStore {
  private readonly insertStmt;
  private readonly byIdStmt;
  private readonly byHashStmt;
  private readonly listStmt;
  private readonly revokeStmt;
  private readonly useStmt;
  private readonly rehashStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO claim_tokens (id, name, token_sha256, max_uses, uses, expires_at, tags_json, groups_json, created_at, revoked_at)
       VALUES (@id, @name, @tokenSha256, @maxUses, 0, @expiresAt, @tagsJson, @groupsJson, @createdAt, NULL)`,
    );
    this.byIdStmt = db.prepare('SELECT * FROM claim_tokens WHERE id = ?');
    this.byHashStmt = db.prepare('SELECT * FROM claim_tokens WHERE token_sha256 = ?');
    this.listStmt = db.prepare('SELECT * FROM claim_tokens ORDER BY created_at, id');
    this.revokeStmt = db.prepare('UPDATE claim_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    // The conditions again, in the statement: a use is counted only while the token is still good.
    this.useStmt = db.prepare(
      `UPDATE claim_tokens SET uses = uses + 1
       WHERE id = @id AND revoked_at IS NULL AND (max_uses IS NULL OR uses < max_uses) AND (expires_at IS NULL OR expires_at > @now)`,
    );
    this.rehashStmt = db.prepare('UPDATE claim_tokens SET token_sha256 = ?, revoked_at = NULL WHERE id = ?');
  }

  insert(rec: Omit<ClaimTokenRecord, 'uses' | 'revokedAt'>): void {
    this.insertStmt.run({ ...rec, tagsJson: JSON.stringify(rec.tags), groupsJson: JSON.stringify(rec.groups) });
  }

  get(id: string): ClaimTokenRecord | null {
    const row = this.byIdStmt.get(id) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  byHash(tokenSha256: string): ClaimTokenRecord | null {
    const row = this.byHashStmt.get(tokenSha256) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  list(): ClaimTokenRecord[] {
    return (this.listStmt.all() as Row[]).map(toRecord);
  }

  revoke(id: string, at: number): boolean {
    return this.revokeStmt.run(at, id).changes > 0;
  }

  /** Counts one use; false when the token is revoked, expired or used up by now. */
  use(id: string, now: number): boolean {
    return this.useStmt.run({ id, now }).changes > 0;
  }

  /** A new secret for an existing token (the configured default changed): a fresh, unrevoked token under the same id. */
  rehash(id: string, tokenSha256: string): void {
    this.rehashStmt.run(tokenSha256, id);
  }
}
