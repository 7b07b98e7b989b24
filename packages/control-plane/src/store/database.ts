import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations.js';

export type Db = Database.Database;

/**
 * Opens the control plane's SQLite file in WAL mode (readers never block the
 * ingest writer) and brings its schema up to date.
 */
export function openDatabase(file: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = connectDatabase(file);
  migrate(db, migrations);
  return db;
}

/**
 * Another connection to a database `openDatabase` has brought up to date
 * (the telemetry writer thread's), with the same settings.
 */
export function connectDatabase(file: string): Db {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Two connections write (the main thread and the telemetry writer thread): a writer waits for the other's commit.
  db.pragma('busy_timeout = 5000');
  // 16 MiB of page cache (the default is 2 MiB): a telemetry batch dirties a page per device in each per-device
  // table, and a cache smaller than that spills pages to the WAL mid-transaction, to be written again. Not more:
  // it is resident memory, and 10,000 connected devices must fit in 512 MB. A cap, not an allocation: a
  // connection that reads little stays small.
  db.pragma('cache_size = -16384');
  return db;
}

/**
 * A transaction that takes the write lock when it begins. With two writing
 * connections, a deferred transaction that reads and then writes fails with
 * SQLITE_BUSY if the other committed after its read, without waiting; an
 * immediate one waits for the lock (busy_timeout) before it reads.
 */
export function writeTransaction<A extends unknown[], R>(db: Db, fn: (...args: A) => R): (...args: A) => R {
  return db.transaction(fn).immediate;
}

export function schemaVersion(db: Db): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return row.v ?? 0;
}

function migrate(db: Db, unordered: readonly Migration[]): void {
  const migrations = [...unordered].sort((a, b) => a.version - b.version);
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const current = schemaVersion(db);
  const known = migrations.at(-1)?.version ?? 0;
  if (current > known) {
    throw new Error(`database schema version ${current} is newer than this control plane knows (${known}): refusing to run an older release on it`);
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    })();
  }
}
