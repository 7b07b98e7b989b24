import { createHash, randomBytes } from 'node:crypto';
import type { Role } from '../access/roles.js';
import type { Db } from './database.js';

/** What a token is; its secret is shown once at creation and never stored. */
export interface ApiTokenRecord {
  id: string;
  name: string;
  role: Role;
  createdAt: number;
  /** the token id that created it, `cli`, or `bootstrap` / `config` for the first admin token */
  createdBy: string;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

interface Row {
  id: string;
  name: string;
  role: Role;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
}

const toRecord = (r: Row): ApiTokenRecord => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: r.created_at,
  createdBy: r.created_by,
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
});

/** Recognisable in logs and secret scanners; 32 random bytes after it. */
export const API_TOKEN_PREFIX = 'perch_';

export function newApiTokenSecret(): string {
  return `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** A 256-bit random secret cannot be guessed from its SHA-256, so no slow KDF is needed and a lookup costs one indexed read. */
export function apiTokenSha256(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** last_used_at is refreshed at most this often, so a busy client does not turn every read into a write. */
const LAST_USED_RESOLUTION_MS = 60_000;

export interface TokenPageKey {
  createdAt: number;
  id: string;
}

/** API tokens: id, name, role, the SHA-256 of the secret, when created, by whom, last used and revoked. */
export class ApiTokenStore {
  private readonly bySecretStmt;
  private readonly touchStmt;

  constructor(private readonly db: Db) {
    this.bySecretStmt = db.prepare('SELECT * FROM api_tokens WHERE secret_sha256 = ?');
    this.touchStmt = db.prepare('UPDATE api_tokens SET last_used_at = @now WHERE id = @id AND (last_used_at IS NULL OR last_used_at <= @now - @resolution)');
  }

  /** A new token with a fresh secret; the secret is returned only here. */
  create(opts: { name: string; role: Role; createdBy: string }, now = Date.now()): { record: ApiTokenRecord; secret: string } {
    const secret = newApiTokenSecret();
    return { record: this.insert(secret, opts, now), secret };
  }

  /** Records a token whose secret was made elsewhere (the bootstrap admin token file). */
  insert(secret: string, opts: { name: string; role: Role; createdBy: string }, now = Date.now()): ApiTokenRecord {
    const id = `tok_${randomBytes(8).toString('hex')}`;
    this.db
      .prepare('INSERT INTO api_tokens (id, name, role, secret_sha256, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, opts.name, opts.role, apiTokenSha256(secret), now, opts.createdBy);
    return { id, name: opts.name, role: opts.role, createdAt: now, createdBy: opts.createdBy, lastUsedAt: null, revokedAt: null };
  }

  /** The token a secret belongs to, revoked or not (the caller decides), and marks it used. */
  authenticate(secret: string, now = Date.now()): ApiTokenRecord | null {
    const row = this.bySecretStmt.get(apiTokenSha256(secret)) as Row | undefined;
    if (!row) return null;
    if (row.revoked_at === null) this.touchStmt.run({ id: row.id, now, resolution: LAST_USED_RESOLUTION_MS });
    return toRecord(row);
  }

  /** The token a secret belongs to, without marking it used. */
  findBySecret(secret: string): ApiTokenRecord | null {
    const row = this.bySecretStmt.get(apiTokenSha256(secret)) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  get(id: string): ApiTokenRecord | null {
    const row = this.db.prepare('SELECT * FROM api_tokens WHERE id = ?').get(id) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /** Oldest first, `limit` after `after`; revoked ones only when asked for. */
  page(opts: { after: TokenPageKey | null; limit: number; includeRevoked: boolean }): ApiTokenRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM api_tokens
         WHERE (@includeRevoked = 1 OR revoked_at IS NULL)
           AND (@afterAt IS NULL OR created_at > @afterAt OR (created_at = @afterAt AND id > @afterId))
         ORDER BY created_at, id LIMIT @limit`,
      )
      .all({ includeRevoked: opts.includeRevoked ? 1 : 0, afterAt: opts.after?.createdAt ?? null, afterId: opts.after?.id ?? null, limit: opts.limit }) as Row[];
    return rows.map(toRecord);
  }

  /** Revokes a token; null when there is none with that id. Revoking twice keeps the first time. */
  revoke(id: string, now = Date.now()): ApiTokenRecord | null {
    this.db.prepare('UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?').run(now, id);
    return this.get(id);
  }

  /** Admin tokens not revoked: the API refuses to revoke the last one, which would lock every admin out. */
  activeAdmins(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL").get() as { n: number }).n;
  }
}
