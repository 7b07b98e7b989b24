import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Schema } from '@perch/shared';

/**
 * Content-addressed artifact files: `<root>/sha256/<hex>`. A file is written
 * under a temporary name, fsynced and renamed, so a reader never sees half of one.
 */
export class ArtifactStore {
  constructor(private readonly root: string) {
    mkdirSync(join(root, 'sha256'), { recursive: true });
  }

  pathOf(sha256: string): string {
    sha256Schema.parse(sha256);
    return join(this.root, 'sha256', sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  size(sha256: string): number {
    return statSync(this.pathOf(sha256)).size;
  }

  put(bytes: Uint8Array): { sha256: string; length: number } {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const final = this.pathOf(sha256);
    if (!existsSync(final)) {
      const tmp = `${final}.${randomBytes(6).toString('hex')}.tmp`;
      const fd = openSync(tmp, 'w');
      try {
        writeSync(fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, final);
    }
    return { sha256, length: bytes.byteLength };
  }

  /** Reads `length` bytes at `offset`; fewer at the end of the file. */
  read(sha256: string, offset: number, length: number): Buffer {
    const fd = openSync(this.pathOf(sha256), 'r');
    try {
      const buf = Buffer.allocUnsafe(length);
      const n = readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }
}
