import { createHash } from 'node:crypto';
import { appendFile, readFile, writeFile, type FileHandle } from 'node:fs/promises';

/** What a download's journal must match to be resumed: the same artifact, cut into the same chunks. */
export interface JournalKey {
  sha256: string;
  length: number;
  chunkBytes: number;
}

const LINE = /^(\d+) ([0-9a-f]{64})$/;

/**
 * What a part file already holds, so a download cut off by a crash, a
 * reboot or a failed attempt resumes instead of starting over. After each
 * chunk is written, a line `offset chunkSha256` is appended. A line can
 * outlive its data (a power cut before the page cache reached the disk), so
 * on resume every recorded chunk is hashed again from the part file, and
 * only those that match are kept; the rest are fetched again. The whole
 * artifact is still checked against its signed sha256 before install.
 */
export class DownloadJournal {
  private constructor(private readonly path: string) {}

  static pathFor(partPath: string): string {
    return `${partPath}.journal`;
  }

  /**
   * The journal of this download and the chunks (offset -> length) the part
   * file verifiably holds. A journal of another artifact or chunk size, or
   * none, starts afresh.
   */
  static async open(partPath: string, part: FileHandle, key: JournalKey): Promise<{ journal: DownloadJournal; done: Map<number, number> }> {
    const path = DownloadJournal.pathFor(partPath);
    const header = JSON.stringify({ sha256: key.sha256, length: key.length, chunkBytes: key.chunkBytes });
    const lines = (await readFile(path, 'utf8').catch(() => '')).split('\n');
    const kept: string[] = [];
    const done = new Map<number, number>();
    if (lines[0] === header) {
      for (const line of lines.slice(1)) {
        const m = LINE.exec(line);
        if (!m) continue; // a line torn by a crash
        const offset = Number(m[1]);
        if (offset % key.chunkBytes !== 0 || offset >= key.length || done.has(offset)) continue;
        const length = Math.min(key.chunkBytes, key.length - offset);
        const buf = Buffer.alloc(length);
        const { bytesRead } = await part.read(buf, 0, length, offset);
        if (bytesRead === length && createHash('sha256').update(buf).digest('hex') === m[2]) {
          done.set(offset, length);
          kept.push(line);
        }
      }
    }
    // Rewritten with what was verified, so a line that failed is not checked again next time.
    await writeFile(path, `${[header, ...kept].join('\n')}\n`);
    return { journal: new DownloadJournal(path), done };
  }

  /** Call once the chunk's bytes are written to the part file. */
  async record(offset: number, chunkSha256: string): Promise<void> {
    await appendFile(this.path, `${offset} ${chunkSha256}\n`);
  }
}
