import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { z } from 'zod';
import { MAX_CHUNK_BYTES } from './artifact-transfer.js';

/**
 * Content-defined chunking: cut points depend on the bytes around them, not
 * on their offset, so an edit in one place of a file (a new classifier head,
 * a shifted tensor) changes only the chunks around it and the rest hash the
 * same as in the previous version. Gear rolling hash with FastCDC's
 * normalised chunking: no cut in the first `minBytes` of a chunk, a harder
 * condition before `avgBytes` and an easier one after, a forced cut at
 * `maxBytes`. The gear table and the cut rule are the format: a change is a
 * new algorithm id.
 */
export const CHUNKING_ALGORITHM = 'gear-cdc-v1';

export const chunkingParamsSchema = z
  .object({
    minBytes: z.number().int().min(64),
    /** a power of two: the cut masks take log2(avgBytes) bits */
    avgBytes: z.number().int().min(256),
    maxBytes: z.number().int().max(MAX_CHUNK_BYTES),
  })
  .refine((p) => p.minBytes < p.avgBytes && p.avgBytes < p.maxBytes, 'need minBytes < avgBytes < maxBytes')
  .refine((p) => Number.isInteger(Math.log2(p.avgBytes)), { message: 'avgBytes must be a power of two', path: ['avgBytes'] });
export type ChunkingParams = z.infer<typeof chunkingParamsSchema>;

/**
 * Registry defaults, from bench/delivery.ts (50 MB model, loopback, 2
 * cores, medians of 3 runs). A head-only fine-tune re-downloads 0.2 % of
 * the model at a 64 KiB average, 0.66 % at 128 KiB and at 256 KiB; but a
 * chunk is a request, and 64 KiB requests ran at ~125 MiB/s against ~240
 * for 256 KiB and ~250-310 for 1 MiB. 256 KiB keeps the speed for ~200 KiB
 * more per fine-tune; the 1 MiB maximum is a request's limit.
 */
export const DEFAULT_CHUNKING: ChunkingParams = { minBytes: 64 * 1024, avgBytes: 256 * 1024, maxBytes: MAX_CHUNK_BYTES };

export interface ContentChunk {
  offset: number;
  length: number;
  sha256: string;
}

/** 256 pseudo-random 32-bit words from a fixed seed (splitmix32), the same on every machine. */
const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  let state = 0x5ee0_c0de;
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    table[i] = z ^ (z >>> 16);
  }
  return table;
})();

/**
 * The top `bits` bits of the 32-bit hash: the hash is shifted left one bit
 * per byte, so its top bits mix the last 32 bytes and its low bits only the
 * last few.
 */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1);
}

/**
 * Streams bytes in any pieces and hands back each chunk as soon as its end
 * is known; the cut points do not depend on how the input was split. Holds
 * no data: only the running hashes of the chunk being cut.
 */
export class ContentChunker {
  private readonly maskHard: number;
  private readonly maskEasy: number;
  /** absolute offset of the chunk being cut, and its bytes so far */
  private start = 0;
  private n = 0;
  private h = 0;
  private hash: Hash = createHash('sha256');

  constructor(private readonly params: ChunkingParams = DEFAULT_CHUNKING) {
    chunkingParamsSchema.parse(params);
    const bits = Math.log2(params.avgBytes);
    // Normalisation level 2: two bits harder before the average, two easier after, so sizes bunch around it.
    this.maskHard = topMask(bits + 2);
    this.maskEasy = topMask(bits - 2);
  }

  push(buf: Uint8Array): ContentChunk[] {
    const out: ContentChunk[] = [];
    const { minBytes, avgBytes, maxBytes } = this.params;
    const len = buf.length;
    let i = 0;
    while (i < len) {
      if (this.n < minBytes) {
        const take = Math.min(minBytes - this.n, len - i);
        this.hash.update(buf.subarray(i, i + take));
        this.n += take;
        i += take;
        continue;
      }
      let h = this.h;
      let j = i;
      let cutAt = -1;
      if (this.n < avgBytes) {
        const stop = Math.min(len, i + (avgBytes - this.n));
        const mask = this.maskHard;
        for (; j < stop; j++) {
          h = ((h << 1) + (GEAR[buf[j] as number] as number)) | 0;
          if ((h & mask) === 0) {
            cutAt = j + 1;
            break;
          }
        }
      } else {
        const stop = Math.min(len, i + (maxBytes - this.n));
        const mask = this.maskEasy;
        for (; j < stop; j++) {
          h = ((h << 1) + (GEAR[buf[j] as number] as number)) | 0;
          if ((h & mask) === 0) {
            cutAt = j + 1;
            break;
          }
        }
        if (cutAt < 0 && this.n + (j - i) === maxBytes) cutAt = j;
      }
      this.h = h;
      if (cutAt < 0) {
        this.hash.update(buf.subarray(i, j));
        this.n += j - i;
        i = j;
        continue;
      }
      this.hash.update(buf.subarray(i, cutAt));
      this.n += cutAt - i;
      i = cutAt;
      out.push(this.cut());
    }
    return out;
  }

  /** The last chunk, if the input did not end on a cut. */
  end(): ContentChunk[] {
    return this.n > 0 ? [this.cut()] : [];
  }

  private cut(): ContentChunk {
    const chunk = { offset: this.start, length: this.n, sha256: this.hash.digest('hex') };
    this.start += this.n;
    this.n = 0;
    this.h = 0;
    this.hash = createHash('sha256');
    return chunk;
  }
}

/** Chunks of bytes already in memory (tests, small documents). */
export function chunkBytes(bytes: Uint8Array, params: ChunkingParams = DEFAULT_CHUNKING): ContentChunk[] {
  const c = new ContentChunker(params);
  return [...c.push(bytes), ...c.end()];
}

/**
 * Chunks of a file read in 1 MiB pieces, with the whole file's sha256 and
 * length from the same pass: a 2 GB model never sits in memory.
 */
export async function chunkFile(path: string, params: ChunkingParams = DEFAULT_CHUNKING): Promise<{ chunks: ContentChunk[]; sha256: string; length: number }> {
  const c = new ContentChunker(params);
  const whole = createHash('sha256');
  const chunks: ContentChunk[] = [];
  let length = 0;
  for await (const piece of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    const buf = piece as Buffer;
    whole.update(buf);
    length += buf.length;
    for (const chunk of c.push(buf)) chunks.push(chunk);
  }
  chunks.push(...c.end());
  return { chunks, sha256: whole.digest('hex'), length };
}
