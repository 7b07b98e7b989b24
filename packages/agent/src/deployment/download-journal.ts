import { createHash } from 'node:crypto';
import { open, readFile, writeFile, type FileHandle } from 'node:fs/promises';

/**
 * What a download's journal must match to be resumed: the same artifact,
 * cut into the same chunks: fixed-size ones (no manifest), or the ones of
 * one signed chunk manifest.
 */
export type JournalKey = { sha256: string; length: number } & ({ chunkBytes: number } | { manifest: string });

/** A chunk the download will hold: its length, and its signed sha256 where a manifest gives one. */
export interface PlannedChunk {
  length: number;
  sha256: string | null;
}

const LINE = /^(\d+) ([0-9a-f]{64})$/;

/**
 * What a part file already holds, so a download cut off by a crash, a
 * reboot or a failed attempt resumes instead of starting over. After each
 * chunk is written, a line `offset chunkSha256` is appended. A line can
 * outlive its data (a power cut before the page cache reached the disk), so
 * on resume every recorded chunk is hashed again from the part file, and
 * only those that match (and match the manifest, where there is one) are
 * kept; the rest are fetched again. The whole artifact is still checked
 * against its signed sha256 before install.
 */
export class DownloadJournal {
  private constructor(private readonly file: FileHandle) {}

  static pathFor(partPath: string): string {
    return `${partPath}.journal`;
  }

  /**
   * The journal of this download and the chunks (offset -> length) the part
   * file verifiably holds. A journal of another artifact or chunk layout,
   * or none, starts afresh.
   */
  static async open(partPath: string, part: FileHandle, key: JournalKey, plan: ReadonlyMap<number, PlannedChunk>): Promise<{ journal: DownloadJournal; done: Map<number, number> }> {
    const path = DownloadJournal.pathFor(partPath);
    // The fixed-size header is the one older agents wrote, so their part files still resume.
    const header = 'chunkBytes' in key
      ? JSON.stringify({ sha256: key.sha256, length: key.length, chunkBytes: key.chunkBytes })
      : JSON.stringify({ sha256: key.sha256, length: key.length, manifest: key.manifest });
    const lines = (await readFile(path, 'utf8').catch(() => '')).split('\n');
    const kept: string[] = [];
    const done = new Map<number, number>();
    if (lines[0] === header) {
      for (const line of lines.slice(1)) {
        const m = LINE.exec(line);
        if (!m) continue; // a line torn by a crash
        const offset = Number(m[1]);
        const planned = plan.get(offset);
        if (!planned || done.has(offset) || (planned.sha256 !== null && planned.sha256 !== m[2])) continue;
        const buf = Buffer.alloc(planned.length);
        const { bytesRead } = await part.read(buf, 0, planned.length, offset);
        if (bytesRead === planned.length && createHash('sha256').update(buf).digest('hex') === m[2]) {
          done.set(offset, planned.length);
          kept.push(line);
        }
      }
    }
    // Rewritten with what was verified, so a line that failed is not checked again next time.
    await writeFile(path, `${[header, ...kept].join('\n')}\n`);
    return { journal: new DownloadJournal(await open(path, 'a')), done };
  }

  /** Call once the chunk's bytes are written to the part file. Each line is one append, whole or torn. */
  async record(offset: number, chunkSha256: string): Promise<void> {
    await this.file.write(`${offset} ${chunkSha256}\n`);
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
