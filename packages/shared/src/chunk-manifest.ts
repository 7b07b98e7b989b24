import { z } from 'zod';
import { MAX_CHUNK_BYTES } from './artifact-transfer.js';
import { CHUNKING_ALGORITHM, chunkingParamsSchema, type ChunkingParams, type ContentChunk } from './content-chunking.js';
import { sha256Schema, type ModelTarget } from './model-metadata.js';
import { decodeJson, type Decoded } from './payload-codec.js';

/**
 * Where an artifact's content-defined chunks lie and what each hashes to.
 * Stored by the registry as an artifact of its own (content-addressed) and
 * named with its sha256 and length in the signed model target, so every
 * chunk hash is signed through it: a device checks each chunk it receives,
 * or copies from a model it already has, against this document.
 */
export const chunkManifestChunkSchema = z.object({
  offset: z.number().int().nonnegative(),
  length: z.number().int().positive().max(MAX_CHUNK_BYTES),
  sha256: sha256Schema,
});

/** A manifest of a 2 GB model at 256 KiB chunks is about 1 MB; this bounds what a device will hold. */
export const MAX_CHUNK_MANIFEST_BYTES = 64 * 1024 * 1024;

export const chunkManifestSchema = z
  .object({
    _type: z.literal('chunk-manifest'),
    algorithm: z.literal(CHUNKING_ALGORITHM),
    params: chunkingParamsSchema,
    /** the whole artifact: the manifest describes these bytes and no others */
    sha256: sha256Schema,
    length: z.number().int().positive(),
    chunks: z.array(chunkManifestChunkSchema).min(1),
  })
  .superRefine((m, ctx) => {
    // Contiguous from 0 to length: every byte is in exactly one chunk.
    let next = 0;
    for (const [i, c] of m.chunks.entries()) {
      if (c.offset !== next) {
        ctx.addIssue({ code: 'custom', path: ['chunks', i, 'offset'], message: `expected offset ${next}, got ${c.offset}` });
        return;
      }
      if (c.length > m.params.maxBytes) {
        ctx.addIssue({ code: 'custom', path: ['chunks', i, 'length'], message: `${c.length} bytes is over params.maxBytes ${m.params.maxBytes}` });
        return;
      }
      next += c.length;
    }
    if (next !== m.length) ctx.addIssue({ code: 'custom', path: ['length'], message: `chunks cover ${next} bytes, length says ${m.length}` });
  });
export type ChunkManifest = z.infer<typeof chunkManifestSchema>;

export function makeChunkManifest(artifact: { sha256: string; length: number }, params: ChunkingParams, chunks: readonly ContentChunk[]): ChunkManifest {
  return chunkManifestSchema.parse({
    _type: 'chunk-manifest',
    algorithm: CHUNKING_ALGORITHM,
    params,
    sha256: artifact.sha256,
    length: artifact.length,
    chunks: chunks.map((c) => ({ offset: c.offset, length: c.length, sha256: c.sha256 })),
  });
}

/** The stored bytes: compact JSON in a fixed key order, so one artifact always gives one manifest sha256. */
export function encodeChunkManifest(m: ChunkManifest): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: m._type,
      algorithm: m.algorithm,
      params: { minBytes: m.params.minBytes, avgBytes: m.params.avgBytes, maxBytes: m.params.maxBytes },
      sha256: m.sha256,
      length: m.length,
      chunks: m.chunks.map((c) => ({ offset: c.offset, length: c.length, sha256: c.sha256 })),
    }),
    'utf8',
  );
}

export function decodeChunkManifest(bytes: Uint8Array): Decoded<ChunkManifest> {
  return decodeJson(chunkManifestSchema, bytes);
}

/** The signed reference in a model target's `custom.chunkManifest`. */
export type ChunkManifestRef = NonNullable<ModelTarget['custom']['chunkManifest']>;
