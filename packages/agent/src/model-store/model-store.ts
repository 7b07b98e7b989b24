import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeChunkManifest, formatZodError, modelRefSchema, readJsonFile, sha256Schema, syncDir, writeFileAtomic } from '@perch/shared';
import { z } from 'zod';
import { DownloadJournal } from '../deployment/download-journal.js';
import type { LocalChunkSource } from '../deployment/local-chunks.js';
import { fileSha256 } from '../storage/file-sha256.js';

const generationSchema = z.number().int().nonnegative();

/**
 * What the box runs after a restart, with no control plane to ask. Every
 * change is one atomic replacement of the file, so a crash at any instant
 * leaves either the pointer before or the pointer after it.
 */
export const activePointerSchema = z
  .object({
    /** generation of the last desired state that was carried out; replay protection across reboots */
    acceptedGeneration: generationSchema,
    /** the model running */
    active: sha256Schema.nullable(),
    /**
     * The last model that passed its health window: where a failed window,
     * or a restart inside one, goes back to. Pointers written before health
     * windows existed lack it; their active model is taken as known-good.
     */
    knownGood: sha256Schema.nullable().optional(),
    /** present while `active` is inside its health window: the generation and the golden input's run time, the window's latency baseline */
    trial: z.object({ generation: generationSchema, smokeMs: z.number().nonnegative().nullable() }).optional(),
    /** the generation whose model was rolled back after its health window, the model and why: not tried again */
    rolledBack: z.object({ generation: generationSchema, target: modelRefSchema.nullable(), reason: z.string().max(2000) }).optional(),
  })
  .transform(({ knownGood, ...p }) => ({ ...p, knownGood: knownGood === undefined ? p.active : knownGood }));
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
    await this.removeStaleTemps();
  }

  /**
   * Temp files of atomic writes cut off by a crash or power cut (the
   * pointer's, a target document's): never renamed into place, so never
   * read; without this, a box that loses power often fills its disk.
   */
  private async removeStaleTemps(): Promise<void> {
    const stale = (dir: string, name: RegExp) =>
      readdir(dir).then((files) => Promise.all(files.filter((f) => name.test(f)).map((f) => rm(join(dir, f), { force: true }))));
    await stale(this.dataDir, /^\.active\.json\.[0-9a-f]{8}\.tmp$/).catch(() => undefined);
    await stale(this.modelsDir, /^\.[0-9a-f]{64}\.(target|chunks)\.json\.[0-9a-f]{8}\.tmp$/).catch(() => undefined);
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

  /** The model's chunk manifest, kept so a later version can copy the chunks it shares instead of downloading them. */
  chunkManifestPath(sha256: string): string {
    return join(this.modelsDir, `${sha256Schema.parse(sha256)}.chunks.json`);
  }

  /** Keeps a model's manifest (as it was signed and verified) beside it. */
  async writeChunkManifest(sha256: string, bytes: Uint8Array): Promise<void> {
    await writeFileAtomic(this.chunkManifestPath(sha256), bytes);
  }

  /**
   * Installed models with their chunk manifests: where a download looks for
   * chunks it already has. A model without one (installed before
   * manifests) or with an unreadable one is left out; every chunk taken
   * from a source is checked against the new signed manifest anyway.
   */
  async chunkSources(): Promise<LocalChunkSource[]> {
    const shas = (await readdir(this.modelsDir)).filter((f) => /^[0-9a-f]{64}\.onnx$/.test(f)).map((f) => f.slice(0, 64));
    const sources = await Promise.all(
      shas.map(async (sha): Promise<LocalChunkSource | null> => {
        const bytes = await readFile(this.chunkManifestPath(sha)).catch(() => null);
        const decoded = bytes ? decodeChunkManifest(bytes) : null;
        return decoded?.ok && decoded.value.sha256 === sha ? { path: this.modelPath(sha), manifest: decoded.value } : null;
      }),
    );
    return sources.filter((s) => s !== null);
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

  /** Replaces the pointer atomically: temp file, fsync, rename, fsync of the folder (writeFileAtomic). */
  async writeActive(pointer: z.input<typeof activePointerSchema>): Promise<ActivePointer> {
    const parsed = activePointerSchema.parse(pointer);
    await writeFileAtomic(this.activeFile, JSON.stringify(parsed));
    return parsed;
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
      await rm(this.chunkManifestPath(m.sha), { force: true }).catch(() => undefined);
      removed.push(m.sha);
    }
    for (const f of await readdir(this.downloadsDir)) {
      const sha = /^([0-9a-f]{64})\.part(\.journal)?$/.exec(f)?.[1];
      if (sha !== undefined && !keep.has(sha)) await rm(join(this.downloadsDir, f), { force: true }).catch(() => undefined);
    }
    return removed;
  }

}
