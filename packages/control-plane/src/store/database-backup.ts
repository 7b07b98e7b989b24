import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Db } from './database.js';

/** The control plane's SQLite file in its data folder. */
export function controlPlaneDatabaseFile(dataDir: string): string {
  return join(dataDir, 'perch.db');
}

export interface BackupResult {
  file: string;
  bytes: number;
  pages: number;
}

/**
 * An online backup of `db` into `file` with SQLite's backup API: a
 * consistent copy while the control plane keeps writing. It is written
 * beside the target and renamed into place, so `file` is either absent or
 * whole; an existing `file` is refused rather than overwritten.
 *
 * `wholeStep`: copy every page in one step. Needed from a second connection
 * (the CLI): SQLite restarts a backup whose source another connection
 * changed between steps, and the ingest commits every 200 ms. In WAL mode
 * the step reads one snapshot and blocks no writer. From the writing
 * connection itself, changes are carried into the copy, so small steps
 * that let the event loop run are safe.
 */
export async function backupDatabase(db: Db, file: string, opts: { wholeStep?: boolean } = {}): Promise<BackupResult> {
  const target = resolve(file);
  if (existsSync(target)) throw new Error(`backup target ${target} exists; choose a new file`);
  const partial = `${target}.partial`;
  rmSync(partial, { force: true });
  try {
    const progress = await db.backup(partial, opts.wholeStep ? { progress: () => 0x7fffffff } : undefined);
    renameSync(partial, target);
    return { file: target, bytes: statSync(target).size, pages: progress.totalPages };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  }
}

/**
 * Backs up the database file of a control plane that may be running, from
 * this process's own connection. No migration runs: an older or newer
 * control plane may own the file.
 */
export async function backupDatabaseFile(source: string, file: string): Promise<BackupResult> {
  const db = new Database(source, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return await backupDatabase(db, file, { wholeStep: true });
  } finally {
    db.close();
  }
}
