import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { chunkBytes, DEFAULT_CHUNKING, encodeChunkManifest, makeChunkManifest } from '@perch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../test-support/harness.js';
import { ModelStore } from './model-store.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function manifestOf(bytes: Buffer): Buffer {
  return encodeChunkManifest(makeChunkManifest({ sha256: sha(bytes), length: bytes.length }, DEFAULT_CHUNKING, chunkBytes(bytes)));
}

describe('model store: chunk manifests beside installed models', () => {
  let dir: { path: string; remove(): Promise<void> };
  let store: ModelStore;
  beforeEach(async () => {
    dir = await tempDir();
    store = new ModelStore(dir.path);
    await store.init();
  });
  afterEach(() => dir.remove());

  async function install(bytes: Buffer): Promise<string> {
    const hash = sha(bytes);
    await writeFile(store.partPath(hash), bytes);
    await store.install(store.partPath(hash), hash, {});
    return hash;
  }

  it('offers installed models with a manifest of their own bytes as chunk sources, and nothing else', async () => {
    const a = Buffer.alloc(300_000, 1);
    const b = Buffer.alloc(200_000, 2);
    const c = Buffer.alloc(100_000, 3);
    const [ha, hb, hc] = [await install(a), await install(b), await install(c)];
    await store.writeChunkManifest(ha, manifestOf(a));
    // b's manifest describes other bytes; c's is not a manifest; a manifest with no model is no source.
    await store.writeChunkManifest(hb, manifestOf(c));
    await writeFile(store.chunkManifestPath(hc), '{"not": "a manifest"}');
    const orphan = Buffer.alloc(50_000, 4);
    await store.writeChunkManifest(sha(orphan), manifestOf(orphan));
    const sources = await store.chunkSources();
    expect(sources.map((s) => s.path)).toEqual([store.modelPath(ha)]);
    expect(sources[0]?.manifest.chunks).toEqual(chunkBytes(a));
  });

  it('removes a model\'s manifest with the model', async () => {
    const a = Buffer.alloc(1000, 1);
    const b = Buffer.alloc(1000, 2);
    const ha = await install(a);
    await store.writeChunkManifest(ha, manifestOf(a));
    const hb = await install(b);
    await store.writeChunkManifest(hb, manifestOf(b));
    expect(await store.collectGarbage(new Set([hb]), 1)).toEqual([ha]);
    expect((await readdir(store.modelsDir)).filter((f) => f.startsWith(ha))).toEqual([]);
    expect(await readdir(store.modelsDir)).toContain(`${hb}.chunks.json`);
  });
});
