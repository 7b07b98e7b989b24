import { lstatSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Files SQLite keeps beside a database that has been opened: part of that backup, useless without it. */
const SIDE_FILES = ['-wal', '-shm', '-journal'] as const;

export interface PruneResult {
  /** backups deleted, oldest first */
  pruned: string[];
  /** why a backup could not be deleted (it stays for the next backup's pass); null when none failed */
  error: string | null;
}

/**
 * Deletes the oldest of `backups` (names of the control plane's own backups
 * in `dir`, newest first) so that `keep` remain, counting `justWritten`,
 * which is never deleted whatever its name sorts as (a clock set back).
 * `keep` 0 deletes nothing. Only regular files go: a link or a folder with
 * a backup's name is not one the control plane wrote, and takes no place.
 */
export function pruneBackups(dir: string, backups: readonly string[], keep: number, justWritten: string): PruneResult {
  if (keep <= 0) return { pruned: [], error: null };
  const older = backups.filter((n) => n !== justWritten && isRegularFile(join(dir, n)));
  const beyond = older.slice(keep - 1).reverse();
  const pruned: string[] = [];
  for (const name of beyond) {
    try {
      if (!removeFile(join(dir, name))) continue;
    } catch (err) {
      return { pruned, error: `${name}: ${(err as Error).message}` };
    }
    pruned.push(name);
    for (const side of SIDE_FILES) {
      try {
        removeFile(join(dir, `${name}${side}`));
      } catch {
        // The backup itself is gone; a side file left is only litter.
      }
    }
  }
  return { pruned, error: null };
}

function isRegularFile(file: string): boolean {
  try {
    return lstatSync(file).isFile();
  } catch {
    return false;
  }
}

/** Unlinks `file` when it is a regular file; false when it is absent (deleted meanwhile) or something else. */
function removeFile(file: string): boolean {
  try {
    if (!lstatSync(file).isFile()) return false;
    unlinkSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
