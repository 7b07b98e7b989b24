import { mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import { encodeJpeg } from './jpeg.js';

export interface SnapshotStoreOptions {
  dir: string;
  maxFiles: number;
  quality: number;
}

/** Names this store writes and serves: no separators, no leading dot. */
export const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,250}\.jpg$/;

/**
 * Event snapshots on local disk, as JPEG files, at most maxFiles of them:
 * the oldest is deleted to make room, so a busy camera cannot fill the disk.
 * Files appear whole (written under a temporary name, then renamed).
 */
export class SnapshotStore {
  /** in insertion order: oldest first */
  private files = new Set<string>();

  constructor(
    private readonly opts: SnapshotStoreOptions,
    private readonly log: Logger,
  ) {}

  get dir(): string {
    return this.opts.dir;
  }

  get count(): number {
    return this.files.size;
  }

  /** Picks up the snapshots already on disk (oldest first, by modification time) and trims them to maxFiles. */
  async start(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true });
    const names = (await readdir(this.opts.dir)).filter((n) => SNAPSHOT_NAME.test(n));
    const dated = await Promise.all(
      names.map(async (name) => ({ name, mtime: await stat(join(this.opts.dir, name)).then((s) => s.mtimeMs, () => 0) })),
    );
    dated.sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
    this.files = new Set(dated.map((d) => d.name));
    await this.trim();
  }

  /** Writes one frame as `name` (which must match SNAPSHOT_NAME) and returns the name. */
  async write(name: string, frame: Uint8Array, width: number, height: number): Promise<string> {
    if (!SNAPSHOT_NAME.test(name)) throw new Error(`bad snapshot name ${JSON.stringify(name)}`);
    const jpeg = await encodeJpeg(frame, width, height, this.opts.quality);
    const path = join(this.opts.dir, name);
    const tmp = `${path}.tmp`;
    await writeFile(tmp, jpeg);
    await rename(tmp, path);
    this.files.delete(name);
    this.files.add(name);
    await this.trim();
    return name;
  }

  /** The path of a stored snapshot, or null when there is no such file in the store. */
  path(name: string): string | null {
    return SNAPSHOT_NAME.test(name) && this.files.has(name) ? join(this.opts.dir, name) : null;
  }

  private async trim(): Promise<void> {
    for (const oldest of this.files) {
      if (this.files.size <= this.opts.maxFiles) break;
      this.files.delete(oldest);
      await unlink(join(this.opts.dir, oldest)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') this.log.warn({ file: oldest, err: err.message }, 'could not delete an old snapshot');
      });
    }
  }
}
