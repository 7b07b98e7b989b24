import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { tempDatabase } from '../test-support/telemetry-windows.js';
import { BackupFolder, backupFileName } from './backup-folder.js';
import { backupDatabase } from './database-backup.js';

let t: ReturnType<typeof tempDatabase>;
let dir: string;
let clock: number;

/** A folder that backs up a real database, on a clock the test moves. */
const folder = (keep: number) => new BackupFolder(dir, (file) => backupDatabase(t.db, file), { keep, now: () => clock });
const onDisk = () => readdirSync(dir).sort();
const at = (iso: string) => Date.parse(iso);

beforeEach(() => {
  t = tempDatabase('perch-backup-retention-');
  t.db.exec("CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('kept')");
  dir = join(t.dir, 'backups');
  clock = at('2026-01-31T02:00:00.000Z');
});
afterEach(() => t.close());

describe('backup retention', () => {
  it('keeps the newest `keep`, deleting the oldest after each backup, and the copies stay whole', async () => {
    const f = folder(3);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      clock += 60_000;
      const b = await f.create();
      made.push(b.name);
      expect(b.pruned).toEqual(i < 3 ? [] : [made[i - 3]]);
      expect(b.pruneError).toBeNull();
    }
    expect(onDisk()).toEqual(made.slice(2));
    expect(f.list().map((b) => b.name)).toEqual(made.slice(2).reverse());
    for (const name of made.slice(2)) {
      const copy = new Database(join(dir, name), { readonly: true, fileMustExist: true });
      expect(copy.prepare('SELECT v FROM marker').pluck().get()).toBe('kept');
      copy.close();
    }
  });

  it('deletes only files it named, never a link, folder, partial or other file, and a pruned backup\'s SQLite side files with it', async () => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const oldest = backupFileName(at('2025-01-01T00:00:00.000Z'));
    const older = backupFileName(at('2025-06-01T00:00:00.000Z'));
    writeFileSync(join(dir, oldest), 'an old backup');
    writeFileSync(join(dir, `${oldest}-wal`), 'its wal');
    writeFileSync(join(dir, `${oldest}-shm`), 'its shm');
    writeFileSync(join(dir, older), 'an older backup');
    // Not the control plane's: other names, a partial, a folder and a link with a backup's name.
    const foreign = ['notes.txt', 'perch-manual.db', 'perch-2025.db', `${backupFileName(at('2024-01-01T00:00:00.000Z'))}.partial`, 'PERCH-20240101T000000000Z.db'];
    for (const name of foreign) writeFileSync(join(dir, name), name);
    const folderNamed = backupFileName(at('2023-01-01T00:00:00.000Z'));
    mkdirSync(join(dir, folderNamed));
    const outside = join(t.dir, 'precious.db');
    writeFileSync(outside, 'not a backup');
    const linkNamed = backupFileName(at('2022-01-01T00:00:00.000Z'));
    symlinkSync(outside, join(dir, linkNamed));

    const b = await folder(1).create();
    expect(b.pruned).toEqual([oldest, older]);
    expect(onDisk()).toEqual([...foreign, folderNamed, linkNamed, b.name].sort());
    expect(existsSync(outside)).toBe(true);
  });

  it('never deletes the backup just written, even when the clock went back and it sorts oldest', async () => {
    const f = folder(1);
    clock = at('2026-03-01T00:00:00.000Z');
    const first = await f.create();
    clock = at('2026-03-02T00:00:00.000Z');
    const second = await f.create();
    expect(second.pruned).toEqual([first.name]);
    clock = at('2026-02-01T00:00:00.000Z');
    const behind = await f.create();
    expect(behind.pruned).toEqual([second.name]);
    expect(onDisk()).toEqual([behind.name]);
  });

  it('keeps every backup with keep 0', async () => {
    const f = folder(0);
    for (let i = 0; i < 9; i++) {
      clock += 1000;
      expect((await f.create()).pruned).toEqual([]);
    }
    expect(f.list()).toHaveLength(9);
  });

  it('prunes nothing when the backup fails', async () => {
    const first = await folder(1).create();
    clock += 1000;
    const failing = new BackupFolder(dir, () => Promise.reject(new Error('disk full')), { keep: 1, now: () => clock });
    await expect(failing.create()).rejects.toThrow('disk full');
    expect(onDisk()).toEqual([first.name]);
  });

  it('is backup.keep in the config: 7 by default, 0 allowed, a negative or fractional count refused naming the key', () => {
    expect(loadControlPlaneConfig({ env: {} }).backup.keep).toBe(7);
    expect(loadControlPlaneConfig({ env: {}, overrides: { backup: { keep: 0 } } }).backup.keep).toBe(0);
    for (const keep of [-1, 1.5]) {
      expect(() => loadControlPlaneConfig({ env: {}, overrides: { backup: { keep } } })).toThrow(/backup\.keep/);
    }
    expect(() => loadControlPlaneConfig({ env: {}, overrides: { backup: { keep: 3, maxAge: 1 } as never } })).toThrow(/backup/);
  });
});
