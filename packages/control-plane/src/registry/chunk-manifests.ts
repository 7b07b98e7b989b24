import { chunkFile, DEFAULT_CHUNKING, encodeChunkManifest, makeChunkManifest, type ChunkingParams, type ChunkManifestRef } from '@perch/shared';
import type { ArtifactStore } from './artifact-store.js';

/**
 * Chunks a stored artifact (streamed from its file) and stores its chunk
 * manifest as an artifact of its own, served over the same chunk protocol.
 * Returns the reference the signed target carries.
 */
export async function storeChunkManifest(artifacts: ArtifactStore, sha256: string, params: ChunkingParams = DEFAULT_CHUNKING): Promise<ChunkManifestRef> {
  const { chunks, sha256: actual, length } = await chunkFile(artifacts.pathOf(sha256), params);
  if (actual !== sha256) throw new Error(`stored artifact ${sha256} now hashes to ${actual}`);
  return artifacts.put(encodeChunkManifest(makeChunkManifest({ sha256, length }, params, chunks)));
}
