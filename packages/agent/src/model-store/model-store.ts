import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { formatZodError, sha256Schema } from '@perch/shared';
import { z } from 'zod';
import { readJsonFile, syncDir, writeFileAtomic } from '../storage/atomic-file.js';
import { DownloadJournal } from '../deployment/download-journal.js';
import { fileSha256 } from '../storage/file-sha256.js';

/** What the box runs after a restart, with no control plane to ask. */
export const activePointerSchema = z.object({
  /** generation of the last desired state that was carried out; replay protection across reboots */
  acceptedGeneration: z.number().int().nonnegative(),
  active: sha256Schema.nullable(),
});
export type ActivePointer = z.infer<typeof activePointerSchema>;

export class ModelStoreError extends Error {
  override readonly name = 'ModelStoreError';
}

/**
 * Content-addressed models: `models/<sha256>.onnx` beside the signed target
 * that describes it (`models/<sha256>.target.json`, kept as received so its
 * signature can be checked again), and `active.json` naming the one to run.
 */
export class ModelStore {
  readonly modelsDir: string;
  readonly downloadsDir: string;
  private readonly activeFile: string;

  constructor(readonly dataDir: string) {
    this.modelsDir = join(dataDir, 'models');
    this.downloadsDir = join(dataDir, 'downloads');
    this.activeFile = join(dataDir, 'active.json');
  }

  async init(): Promise<void> {
    await mkdir(this.modelsDir, { recursive: true });
    await mkdir(this.downloadsDir, { recursive: true });
  }

  modelPath(sha256: string): string {
    return join(this.modelsDir, `${sha256Schema.parse(sha256)}.onnx`);
  }

  targetPath(sha256: string): string {
    return join(this.modelsDir, `${sha256Schema.parse(sha256)}.target.json`);
  }

  partPath(sha256: string): string {
    return join(this.downloadsDir, `${sha256Schema.parse(sha256)}.part`);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await stat(this.modelPath(sha256));
      await stat(this.targetPath(sha256));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Moves a verified download into the store. The target is written first,
   * so a model file never exists without the signed document describing it.
   */
  async install(partPath: string, sha256: string, rawTarget: unknown): Promise<string> {
    await writeFileAtomic(this.targetPath(sha256), JSON.stringify(rawTarget));
    const fh = await open(partPath, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const dest = this.modelPath(sha256);
    await rename(partPath, dest);
    await syncDir(this.modelsDir);
    await rm(this.journalPath(sha256), { force: true });
    return dest;
  }

  /** Throws unless the stored file still hashes to its name (bit rot, a half-written file, tampering). */
  async verify(sha256: string): Promise<string> {
    const path = this.modelPath(sha256);
    let actual: string;
    try {
      actual = (await fileSha256(path)).sha256;
    } catch (err) {
      throw new ModelStoreError(`stored model ${sha256} unreadable: ${(err as Error).message}`);
    }
    if (actual !== sha256) throw new ModelStoreError(`stored model ${sha256} is corrupt: its sha256 is now ${actual}`);
    return path;
  }

  async readTarget(sha256: string): Promise<unknown> {
    const raw = await readJsonFile(this.targetPath(sha256));
    if (raw === undefined) throw new ModelStoreError(`stored model ${sha256} has no target document`);
    return raw;
  }

  async readActive(): Promise<ActivePointer | undefined> {
    const raw = await readJsonFile(this.activeFile);
    if (raw === undefined) return undefined;
    const parsed = activePointerSchema.safeParse(raw);
    if (!parsed.success) throw new ModelStoreError(`${this.activeFile}: ${formatZodError(parsed.error)}`);
    return parsed.data;
  }

  async writeActive(pointer: ActivePointer): Promise<void> {
    await writeFileAtomic(this.activeFile, JSON.stringify(activePointerSchema.parse(pointer)));
  }

  /** Beside the part file, the downloader's record of the chunks it holds. */
  journalPath(sha256: string): string {
    return DownloadJournal.pathFor(this.partPath(sha256));
  }

  /** Forgets a download that must not be resumed (its bytes were refused). */
  async discardPart(sha256: string): Promise<void> {
    await rm(this.partPath(sha256), { force: true });
    await rm(this.journalPath(sha256), { force: true });
  }

  /**
   * Bounds the cache: keeps the models in `keep` (the active one and the
   * one it replaced, to fall back on) and the most recently installed others
   * up to `maxModels` in all; deletes the rest, and every part file (with its
   * journal) not of a model in `keep`. Returns the sha256s of the models
   * deleted. A file that cannot be deleted is left for the next pass.
   */
  async collectGarbage(keep: ReadonlySet<string>, maxModels: number): Promise<string[]> {
    const models = await Promise.all(
      (await readdir(this.modelsDir))
        .filter((f) => /^[0-9a-f]{64}\.onnx$/.test(f))
        .map(async (f) => ({ sha: f.slice(0, 64), mtimeMs: (await stat(join(this.modelsDir, f)).catch(() => ({ mtimeMs: 0 }))).mtimeMs })),
    );
    models.sort((a, b) => b.mtimeMs - a.mtimeMs);
    let room = Math.max(0, maxModels - models.filter((m) => keep.has(m.sha)).length);
    const removed: string[] = [];
    for (const m of models) {
      if (keep.has(m.sha)) continue;
      if (room > 0) {
        room--;
        continue;
      }
      // The model file first: a target without its model is never taken for an installed model.
      await rm(this.modelPath(m.sha), { force: true }).catch(() => undefined);
      await rm(this.targetPath(m.sha), { force: true }).catch(() => undefined);
      removed.push(m.sha);
    }
    for (const f of await readdir(this.downloadsDir)) {
      const sha = /^([0-9a-f]{64})\.part(\.journal)?$/.exec(f)?.[1];
      if (sha !== undefined && !keep.has(sha)) await rm(join(this.downloadsDir, f), { force: true }).catch(() => undefined);
    }
    return removed;
  }

}
