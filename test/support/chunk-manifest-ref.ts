import { createHash } from 'node:crypto';
import { chunkBytes, DEFAULT_CHUNKING, encodeChunkManifest, makeChunkManifest, type ChunkManifestRef } from '@perch/shared';

/** The chunk manifest the registry signs for these bytes: the chunker is deterministic, so it can be made here too. */
export function chunkManifestRefFor(bytes: Uint8Array): ChunkManifestRef {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const manifest = encodeChunkManifest(makeChunkManifest({ sha256, length: bytes.length }, DEFAULT_CHUNKING, chunkBytes(bytes)));
  return { sha256: createHash('sha256').update(manifest).digest('hex'), length: manifest.length };
}

/** The `custom.chunkManifest` of the model target in an API answer, wherever the answer nests the target. */
export function signedChunkManifestRef(answer: unknown): ChunkManifestRef | undefined {
  if (typeof answer !== 'object' || answer === null) return undefined;
  const custom = (answer as { custom?: { chunkManifest?: ChunkManifestRef } }).custom;
  if (custom?.chunkManifest) return custom.chunkManifest;
  for (const value of Object.values(answer)) {
    const found = signedChunkManifestRef(value);
    if (found) return found;
  }
  return undefined;
}
