import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { ChunkManifest } from '@perch/shared';

/** A file on this device and the chunk manifest of its bytes: an installed model, or the part file being written. */
export interface LocalChunkSource {
  path: string;
  manifest: Pick<ChunkManifest, 'chunks'>;
}

interface Place {
  path: string;
  offset: number;
}

/**
 * Where each chunk (by sha256) can be read on this device, so a new
 * version copies the chunks it shares with models already here instead of
 * downloading them. A source's manifest only says where to look: every
 * chunk read is hashed and used only if it matches the sha256 asked for,
 * which the caller takes from the new, signed manifest.
 */
export class LocalChunks {
  private readonly places = new Map<string, Place[]>();
  private readonly files = new Map<string, Promise<FileHandle | null>>();

  constructor(sources: readonly LocalChunkSource[]) {
    for (const s of sources) for (const c of s.manifest.chunks) this.add(c.sha256, s.path, c.offset);
  }

  add(sha256: string, path: string, offset: number): void {
    const list = this.places.get(sha256);
    if (list) list.push({ path, offset });
    else this.places.set(sha256, [{ path, offset }]);
  }

  has(sha256: string): boolean {
    return this.places.has(sha256);
  }

  /** The chunk's bytes from the first place that still holds them intact; null if none does. */
  async read(sha256: string, length: number): Promise<Buffer | null> {
    for (const place of this.places.get(sha256) ?? []) {
      const fh = await this.file(place.path);
      if (!fh) continue;
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, place.offset).catch(() => ({ bytesRead: -1 }));
      if (bytesRead === length && createHash('sha256').update(buf).digest('hex') === sha256) return buf;
    }
    return null;
  }

  async close(): Promise<void> {
    const handles = await Promise.all(this.files.values());
    this.files.clear();
    await Promise.all(handles.map((fh) => fh?.close().catch(() => undefined)));
  }

  private file(path: string): Promise<FileHandle | null> {
    let fh = this.files.get(path);
    if (!fh) {
      // A model removed since its manifest was read is simply not a source.
      fh = open(path, 'r').catch(() => null);
      this.files.set(path, fh);
    }
    return fh;
  }
}
