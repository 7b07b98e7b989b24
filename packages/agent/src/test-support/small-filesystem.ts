import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type SmallFilesystem =
  | { ok: true; path: string; freeBytes(): Promise<number>; unmount(): Promise<void> }
  | { ok: false; skip: string };

/**
 * A real file system of `bytes` (a tmpfs mounted on a temp folder), so a
 * write past it fails with the kernel's own ENOSPC, as on a full SD card.
 * Mounting needs root (CI runs as root); elsewhere the tests that need it
 * are skipped with the reason this returns.
 */
export async function mountSmallFilesystem(bytes: number): Promise<SmallFilesystem> {
  if (process.getuid?.() !== 0) return { ok: false, skip: 'a real ENOSPC needs a small file system, and mounting a tmpfs needs root (.ci/run runs as root)' };
  const path = await mkdtemp(join(tmpdir(), 'perch-small-fs-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'perch-test', path]);
  } catch (err) {
    await rm(path, { recursive: true, force: true });
    return { ok: false, skip: `cannot mount a small tmpfs here (no CAP_SYS_ADMIN?): ${(err as Error).message.split('\n')[0]}` };
  }
  return {
    ok: true,
    path,
    freeBytes: async () => {
      const s = await statfs(path);
      return s.bavail * s.bsize;
    },
    unmount: async () => {
      await run('umount', ['-l', path]).catch(() => undefined);
      await rm(path, { recursive: true, force: true });
    },
  };
}

/** Fills the file system up to `leave` free bytes with one file; returns its path (delete it to free the space). */
export async function fillUp(fs: Extract<SmallFilesystem, { ok: true }>, leave: number): Promise<string> {
  const file = join(fs.path, `ballast-${Date.now()}`);
  const fh = await open(file, 'w');
  try {
    let free = await fs.freeBytes();
    const chunk = Buffer.alloc(64 * 1024, 1);
    while (free > leave) {
      const n = Math.min(chunk.length, free - leave);
      await fh.write(chunk, 0, n);
      free = await fs.freeBytes();
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return file;
}
