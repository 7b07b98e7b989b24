import type { Db } from './database.js';

export type AuditActorKind = 'token' | 'cli' | 'anonymous';
/** ok: done; denied: refused by authentication or role; failed: refused or failed otherwise (validation, conflict, error) */
export type AuditOutcome = 'ok' | 'denied' | 'failed';

export interface AuditActor {
  kind: AuditActorKind;
  /** the API token's id; null for the CLI and for requests without a known token */
  tokenId: string | null;
  /** the token's name, `cli` or `anonymous` */
  name: string;
}

export interface AuditEntryInput {
  at: number;
  actor: AuditActor;
  /** `METHOD /route/pattern`, e.g. `PUT /api/v1/devices/:id/desired-model`, or a CLI command */
  action: string;
  path: string;
  /** the ids the change is about: route parameters, or what a CLI command named */
  target: Record<string, string>;
  /** the HTTP status; null for the CLI */
  status: number | null;
  outcome: AuditOutcome;
  remoteAddress: string | null;
  /** a redacted summary of the request body, never the body itself */
  summary: unknown;
}

export interface AuditEntry extends AuditEntryInput {
  id: number;
}

export interface AuditQuery {
  /** a token id or an actor name (a token's name, `cli`, `anonymous`) */
  actor?: string | undefined;
  /** a prefix of the action: `DELETE`, `POST /api/v1/tokens` */
  action?: string | undefined;
  outcome?: AuditOutcome | undefined;
  /** entries at or after this time (ms) */
  since?: number | undefined;
  /** entries older than this id: the page cursor */
  beforeId?: number | undefined;
  limit: number;
}

interface Row {
  id: number;
  at: number;
  actor_kind: AuditActorKind;
  actor_id: string | null;
  actor_name: string;
  action: string;
  path: string;
  target_json: string;
  status: number | null;
  outcome: AuditOutcome;
  remote_address: string | null;
  summary_json: string | null;
}

const toEntry = (r: Row): AuditEntry => ({
  id: r.id,
  at: r.at,
  actor: { kind: r.actor_kind, tokenId: r.actor_id, name: r.actor_name },
  action: r.action,
  path: r.path,
  target: JSON.parse(r.target_json) as Record<string, string>,
  status: r.status,
  outcome: r.outcome,
  remoteAddress: r.remote_address,
  summary: r.summary_json === null ? null : (JSON.parse(r.summary_json) as unknown),
});

/** Who changed what, when, from where, and how it ended. Append only; the retention job deletes entries past `auditDays`. */
export class AuditLogStore {
  private readonly insertStmt;
  private readonly queryStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO audit_log (at, actor_kind, actor_id, actor_name, action, path, target_json, status, outcome, remote_address, summary_json)
       VALUES (@at, @actorKind, @actorId, @actorName, @action, @path, @target, @status, @outcome, @remoteAddress, @summary)`,
    );
    // Every filter is a bound parameter; the action prefix is compared with substr, not LIKE, so % and _ are plain characters.
    this.queryStmt = db.prepare(
      `SELECT * FROM audit_log
       WHERE (@actor IS NULL OR actor_id = @actor OR actor_name = @actor)
         AND (@action IS NULL OR substr(action, 1, length(@action)) = @action)
         AND (@outcome IS NULL OR outcome = @outcome)
         AND (@since IS NULL OR at >= @since)
         AND (@beforeId IS NULL OR id < @beforeId)
       ORDER BY id DESC LIMIT @limit`,
    );
  }

  record(e: AuditEntryInput): number {
    const info = this.insertStmt.run({
      at: e.at,
      actorKind: e.actor.kind,
      actorId: e.actor.tokenId,
      actorName: e.actor.name,
      action: e.action,
      path: e.path,
      target: JSON.stringify(e.target),
      status: e.status,
      outcome: e.outcome,
      remoteAddress: e.remoteAddress,
      summary: e.summary === null || e.summary === undefined ? null : JSON.stringify(e.summary),
    });
    return Number(info.lastInsertRowid);
  }

  /** Newest first. */
  query(q: AuditQuery): AuditEntry[] {
    const rows = this.queryStmt.all({
      actor: q.actor ?? null,
      action: q.action ?? null,
      outcome: q.outcome ?? null,
      since: q.since ?? null,
      beforeId: q.beforeId ?? null,
      limit: q.limit,
    }) as Row[];
    return rows.map(toEntry);
  }
}
