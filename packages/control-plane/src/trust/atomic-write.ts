import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file so that after a power cut it holds either the old or the new
 * content: temp file in the same folder, fsync, rename, fsync of the folder
 * so the rename itself is durable. Metadata a device has already seen must
 * never come back torn or older.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  // The mode is set at creation, so a private key is never readable by others, not even briefly.
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dirname(path));
}

/** Makes a rename or unlink in `dir` durable; a filesystem that cannot fsync a folder is left as it is. */
export async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // not supported here (some network filesystems)
  } finally {
    await fh?.close();
  }
}
