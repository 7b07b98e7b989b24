import { existsSync, renameSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Logger } from '../log/logger.js';

export const OUTBOX_KINDS = ['telemetry', 'events'] as const;
export type OutboxKind = (typeof OUTBOX_KINDS)[number];
export const DROP_POLICIES = ['drop-oldest', 'drop-newest'] as const;
export type DropPolicy = (typeof DROP_POLICIES)[number];

export interface OutboxStoreOptions {
  /** payload bytes the outbox may hold; a record that would exceed it triggers the drop policy */
  maxBytes: number;
  /** records the outbox may hold, when set */
  maxRecords?: number | undefined;
  dropPolicy: DropPolicy;
  /**
   * SQLite's page limit. An insert past it fails with SQLITE_FULL, exactly as
   * on a full disk, which is how tests fill the disk without root. Default:
   * derived from maxBytes as a backstop (see `defaultMaxPageCount`).
   */
  maxPageCount?: number | undefined;
}

export interface StoredRecord {
  id: number;
  kind: OutboxKind;
  payload: Buffer;
}

export type RejectReason = 'too-large' | 'drop-newest' | 'storage-full' | 'storage-error';

/** What happened to one record handed to the outbox. */
export type AddResult =
  | {
      accepted: true;
      id: number;
      /** older records dropped to make room: for the configured bound, or because the disk was full */
      droppedOlder: number;
      cause?: 'bound' | 'storage-full';
      error?: string;
    }
  | { accepted: false; reason: RejectReason; error?: string };
type Accepted = Extract<AddResult, { accepted: true }>;

const SCHEMA_VERSION = 1;
/** Leaves the WAL file this size after a checkpoint instead of its high-water mark. */
const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024;

/**
 * The backstop page limit: twice the payload bound plus 1 MiB covers b-tree
 * overhead, so it only trips if the byte accounting were ever wrong, or on a
 * genuinely full disk; both take the same full-disk path.
 */
export function defaultMaxPageCount(maxBytes: number, pageSize: number): number {
  return Math.ceil((2 * maxBytes + 1024 * 1024) / pageSize);
}

/** SQLite reports a full disk (ENOSPC on write) and a database at max_page_count both as SQLITE_FULL. */
function isStorageFull(err: unknown): boolean {
  return err instanceof Database.SqliteError && err.code === 'SQLITE_FULL';
}

function isCorrupt(err: unknown): boolean {
  return err instanceof Database.SqliteError && (err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB');
}

interface Victim {
  id: number;
  size: number;
}

/**
 * The outbox's SQLite file: records in acceptance order (AUTOINCREMENT, so
 * an id is never reused and a sender's cursor never misses a new record),
 * bounded in bytes and records, with the drop counter in the same file.
 *
 * Durability: WAL with synchronous=FULL, so a record is fsynced when add()
 * returns and survives a power cut, not only a crash. A box gets one window
 * every few seconds and a handful of events, so an fsync per record is
 * cheap; acknowledgements are deleted in batches (a lost delete only means a
 * duplicate, which ingestion ignores).
 */
export class OutboxStore {
  private readonly db: Database.Database;
  private count = 0;
  private bytes = 0;
  private dropped = 0;
  private persistedDropped = 0;
  private readonly stmt;

  private constructor(
    db: Database.Database,
    private readonly opts: OutboxStoreOptions,
  ) {
    this.db = db;
    this.stmt = {
      insert: db.prepare<[string, Buffer, number, number]>('INSERT INTO records (kind, payload, size, created_at) VALUES (?, ?, ?, ?)'),
      remove: db.prepare<[number], { size: number }>('DELETE FROM records WHERE id = ? RETURNING size'),
      after: db.prepare<[number, number], { id: number; kind: string; payload: Buffer }>('SELECT id, kind, payload FROM records WHERE id > ? ORDER BY id LIMIT ?'),
      newerThan: db.prepare<[number], Victim>('SELECT id, size FROM records WHERE id > ? ORDER BY id'),
      upTo: db.prepare<[number], Victim>('SELECT id, size FROM records WHERE id <= ? ORDER BY id'),
      setDropped: db.prepare<[number]>("INSERT INTO meta (key, value) VALUES ('dropped_total', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    };
    const totals = db.prepare<[], { n: number; bytes: number }>('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM records').get();
    this.count = totals?.n ?? 0;
    this.bytes = totals?.bytes ?? 0;
    const dropped = db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'dropped_total'").get();
    this.dropped = dropped?.value ?? 0;
    this.persistedDropped = this.dropped;
  }

  /**
   * Opens (or creates) the file. A file SQLite cannot read as a database is
   * moved aside and a fresh one started: a box must keep reporting, and the
   * damaged file stays for a post-mortem.
   */
  static open(file: string, opts: OutboxStoreOptions, log: Logger): OutboxStore {
    if (!(opts.maxBytes > 0)) throw new RangeError('outbox maxBytes must be positive');
    try {
      return new OutboxStore(openDatabase(file, opts), opts);
    } catch (err) {
      if (!isCorrupt(err)) throw err;
      const aside = `${file}.corrupt-${Date.now()}`;
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
      log.error({ err: (err as Error).message, movedTo: aside }, 'outbox database unreadable; moved aside, starting an empty one');
      return new OutboxStore(openDatabase(file, opts), opts);
    }
  }

  /** records waiting for an acknowledgement */
  get pending(): number {
    return this.count;
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  /** records dropped since the file was created, persisted with them */
  get droppedTotal(): number {
    return this.dropped;
  }

  /**
   * Stores a record durably, applying the bound first. Never throws for
   * storage trouble: a full disk is the drop policy's business, and the
   * caller (inference) must carry on.
   * `inFlightUpTo`: records with ids up to this one are being published;
   * drop-oldest spares them while others can go, since they may still arrive.
   */
  add(kind: OutboxKind, payload: Buffer, inFlightUpTo = 0): AddResult {
    const size = payload.length;
    if (size > this.opts.maxBytes) return this.reject('too-large');
    const needBytes = this.bytes + size - this.opts.maxBytes;
    const needRecords = this.opts.maxRecords === undefined ? 0 : this.count + 1 - this.opts.maxRecords;
    let victims: Victim[] = [];
    let full: unknown;
    if (needBytes > 0 || needRecords > 0) {
      if (this.opts.dropPolicy === 'drop-newest') return this.reject('drop-newest');
      victims = this.pickVictims(inFlightUpTo, (picked, freed) => picked >= needRecords && freed >= needBytes);
    }
    for (;;) {
      try {
        const done = this.commit(kind, payload, victims);
        if (full !== undefined) return { ...done, cause: 'storage-full', error: (full as Error).message };
        return done.droppedOlder > 0 ? { ...done, cause: 'bound' } : done;
      } catch (err) {
        if (!isStorageFull(err)) return this.reject('storage-error', err);
        full = err;
        // The disk (or max_page_count) is full. drop-oldest frees ever more of the oldest records (1, 2, 4...)
        // and tries again: a new record goes to the last page, so space comes back only as whole freed pages.
        if (this.opts.dropPolicy === 'drop-newest' || victims.length >= this.count) return this.reject('storage-full', err);
        const want = Math.min(this.count, Math.max(victims.length * 2, victims.length + 1));
        victims = this.pickVictims(inFlightUpTo, (picked) => picked >= want);
      }
    }
  }

  /** Up to `limit` records after `afterId`, oldest first. */
  after(afterId: number, limit: number): StoredRecord[] {
    return this.stmt.after.all(afterId, limit).map((r) => {
      // The CHECK constraint guarantees the kind; this keeps the type honest.
      const kind = OUTBOX_KINDS.find((k) => k === r.kind);
      if (!kind) throw new Error(`outbox record ${r.id} has unknown kind ${r.kind}`);
      return { id: r.id, kind, payload: r.payload };
    });
  }

  /** Deletes acknowledged records in one transaction; ids already gone are ignored. */
  remove(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const freed = this.db.transaction(() => {
      let n = 0;
      let bytes = 0;
      for (const id of ids) {
        const row = this.stmt.remove.get(id);
        if (row) {
          n++;
          bytes += row.size;
        }
      }
      return { n, bytes };
    })();
    this.count -= freed.n;
    this.bytes -= freed.bytes;
  }

  /** Adds drops counted elsewhere (while the file could not be opened). */
  countDropped(n: number): void {
    this.dropped += n;
    this.persistDropped();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private commit(kind: OutboxKind, payload: Buffer, victims: readonly Victim[]): Accepted {
    const dropped = this.dropped + victims.length;
    const id = this.db.transaction(() => {
      for (const v of victims) this.stmt.remove.get(v.id);
      const res = this.stmt.insert.run(kind, payload, payload.length, Date.now());
      if (dropped !== this.persistedDropped) this.stmt.setDropped.run(dropped);
      return Number(res.lastInsertRowid);
    })();
    this.count += 1 - victims.length;
    this.bytes += payload.length - victims.reduce((n, v) => n + v.size, 0);
    this.dropped = dropped;
    this.persistedDropped = dropped;
    return { accepted: true, id, droppedOlder: victims.length };
  }

  private reject(reason: RejectReason, err?: unknown): AddResult {
    this.dropped++;
    this.persistDropped();
    return err === undefined ? { accepted: false, reason } : { accepted: false, reason, error: (err as Error).message };
  }

  private persistDropped(): void {
    try {
      this.stmt.setDropped.run(this.dropped);
      this.persistedDropped = this.dropped;
    } catch {
      // The disk is full: the next successful write persists the count.
    }
  }

  /** The oldest records not in flight, then the oldest in flight, until `enough` says so. */
  private pickVictims(inFlightUpTo: number, enough: (picked: number, freed: number) => boolean): Victim[] {
    const victims: Victim[] = [];
    let freed = 0;
    for (const stmt of [this.stmt.newerThan, this.stmt.upTo]) {
      // Collected before deleting: the connection is busy while a statement iterates.
      for (const v of stmt.iterate(inFlightUpTo)) {
        if (enough(victims.length, freed)) return victims;
        victims.push(v);
        freed += v.size;
      }
    }
    return victims;
  }
}

function openDatabase(file: string, opts: OutboxStoreOptions): Database.Database {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const maxPages = opts.maxPageCount ?? defaultMaxPageCount(opts.maxBytes, pageSize);
    if (!Number.isInteger(maxPages) || maxPages <= 0) throw new RangeError(`outbox maxPageCount must be a positive integer, got ${maxPages}`);
    db.pragma(`max_page_count = ${maxPages}`);
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) throw new Error(`outbox schema version ${version} is newer than this agent knows (${SCHEMA_VERSION})`);
  if (version === SCHEMA_VERSION) return;
  db.transaction(() => {
    db.exec(`
      CREATE TABLE records (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL CHECK (kind IN ('telemetry', 'events')),
        payload    BLOB NOT NULL,
        size       INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}
