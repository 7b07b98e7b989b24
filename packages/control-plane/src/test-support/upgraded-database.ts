import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db } from '../store/database.js';
import { MIGRATIONS } from '../store/migrations.js';

/**
 * A migration's test: a database made at the schema before `version` and
 * filled by `seed`, then opened as the control plane opens it (every
 * migration applied) and handed to `check`. Its folder goes afterwards.
 */
export function upgradedDatabase(version: number, seed: (old: Db) => void, check: (db: Db) => void): void {
  const dir = mkdtempSync(join(tmpdir(), `perch-migration-${version}-`));
  try {
    const file = join(dir, 'perch.db');
    const old = openDatabase(file, MIGRATIONS.filter((m) => m.version < version));
    try {
      seed(old);
    } finally {
      old.close();
    }
    const db = openDatabase(file);
    try {
      check(db);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
