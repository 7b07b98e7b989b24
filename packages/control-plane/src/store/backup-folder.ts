import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pruneBackups } from './backup-retention.js';
import type { BackupResult } from './database-backup.js';

export interface BackupFile {
  /** the file's name in the folder, e.g. `perch-20260131T020304123Z.db` */
  name: string;
  bytes: number;
  createdAt: number;
}

/** A backup just written, and the older ones its retention deleted. */
export interface CreatedBackup extends BackupFile {
  /** older backups deleted to keep `keep`, oldest first */
  pruned: string[];
  /** why deleting an older backup failed (the backup itself is written); null when none did */
  pruneError: string | null;
}

export interface BackupFolderOptions {
  /** backups kept: after each backup the oldest beyond this are deleted; 0 keeps every one */
  keep?: number;
  now?: () => number;
}

/** Names this folder gives out; `.partial` files of a backup under way are not listed. */
const BACKUP_NAME = /^perch-\d{8}T\d{9}Z\.db$/;

/** `perch-20260131T020304123Z.db`: sorts by time, and has no character a shell or URL needs quoted. */
export function backupFileName(at: number): string {
  return `perch-${new Date(at).toISOString().replace(/[-:.]/g, '')}.db`;
}

/** The time a backup's name gives. */
function backupTime(name: string): number {
  const m = /^perch-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z\.db$/.exec(name);
  return m ? Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`) : Number.NaN;
}

/** A backup is already being written: one at a time, each reads the whole database. */
export class BackupInProgressError extends Error {
  constructor() {
    super('a backup is already being written; try again when it is done');
    this.name = 'BackupInProgressError';
  }
}

/** Two backups asked for within one millisecond. */
export class BackupExistsError extends Error {
  constructor(name: string) {
    super(`backup ${name} exists; try again`);
    this.name = 'BackupExistsError';
  }
}

/**
 * The control plane's own folder of database backups (`<dataDir>/backups`).
 * It names every file itself, so no caller's path reaches the file system.
 * The folder is made 0700 and each file 0600: a backup holds the hashes of
 * every token and device secret. After each backup the oldest beyond `keep`
 * are deleted: only files with the names this folder gives out, never the
 * one just written.
 */
export class BackupFolder {
  private busy = false;

  private readonly keep: number;
  private readonly now: () => number;

  constructor(
    readonly dir: string,
    private readonly backup: (file: string) => Promise<BackupResult>,
    opts: BackupFolderOptions = {},
  ) {
    this.keep = opts.keep ?? 0;
    this.now = opts.now ?? Date.now;
  }

  async create(): Promise<CreatedBackup> {
    if (this.busy) throw new BackupInProgressError();
    this.busy = true;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const at = this.now();
      const name = backupFileName(at);
      const file = join(this.dir, name);
      if (this.exists(name)) throw new BackupExistsError(name);
      const r = await this.backup(file);
      chmodSync(file, 0o600);
      // Pruned only once the new backup is whole, and inside the one-at-a-time guard.
      const { pruned, error } = pruneBackups(this.dir, this.list().map((b) => b.name), this.keep, name);
      return { name, bytes: r.bytes, createdAt: at, pruned, pruneError: error };
    } finally {
      this.busy = false;
    }
  }

  /** Newest first. */
  list(): BackupFile[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names
      .filter((n) => BACKUP_NAME.test(n))
      .sort()
      .reverse()
      .flatMap((name) => {
        try {
          const st = statSync(join(this.dir, name));
          return st.isFile() ? [{ name, bytes: st.size, createdAt: backupTime(name) }] : [];
        } catch {
          return []; // deleted meanwhile
        }
      });
  }

  private exists(name: string): boolean {
    try {
      statSync(join(this.dir, name));
      return true;
    } catch {
      return false;
    }
  }
}
