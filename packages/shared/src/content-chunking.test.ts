import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ContentChunker, DEFAULT_CHUNKING, chunkBytes, chunkFile, chunkingParamsSchema, type ContentChunk } from './content-chunking.js';

/** Seeded bytes (xorshift32): the same on every run, unlike randomBytes, so a failure can be replayed. */
function seededBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let s = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

describe('content-defined chunking', () => {
  const data = seededBytes(12 * MiB, 7);
  const chunks = chunkBytes(data);

  it('covers the input contiguously, within min and max, each chunk hashed', () => {
    let next = 0;
    for (const [i, c] of chunks.entries()) {
      expect(c.offset).toBe(next);
      expect(c.length).toBeLessThanOrEqual(DEFAULT_CHUNKING.maxBytes);
      if (i < chunks.length - 1) expect(c.length).toBeGreaterThanOrEqual(DEFAULT_CHUNKING.minBytes);
      expect(c.sha256).toBe(sha(data.subarray(c.offset, c.offset + c.length)));
      next += c.length;
    }
    expect(next).toBe(data.length);
    // Sizes bunch around the average on random bytes (12 MiB / 256 KiB = 48 at exactly the average).
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(DEFAULT_CHUNKING.avgBytes * 0.6);
    expect(mean).toBeLessThan(DEFAULT_CHUNKING.avgBytes * 1.6);
  });

  it('cuts in the same places however the input is split', () => {
    for (const piece of [1, 4093, 65_536, 300_000, 1_048_577]) {
      const c = new ContentChunker();
      const got: ContentChunk[] = [];
      // Small pieces only over the first 2 MiB: byte-at-a-time over 12 MiB is slow and proves nothing more.
      const input = piece < 4096 ? data.subarray(0, 2 * MiB) : data;
      for (let o = 0; o < input.length; o += piece) got.push(...c.push(input.subarray(o, o + piece)));
      got.push(...c.end());
      expect(got).toEqual(piece < 4096 ? chunkBytes(input) : chunks);
    }
  });

  it('is deterministic across instances and runs', () => {
    expect(chunkBytes(data)).toEqual(chunks);
    // Pinned: a change to the gear table or the cut rule changes these and must become a new algorithm id.
    const small = chunkBytes(seededBytes(2 * MiB, 42));
    expect(small.map((c) => c.length)).toEqual([339574, 402638, 317024, 308661, 104998, 363644, 260613]);
  });

  it('an insertion near the start changes only the chunks around it', () => {
    const edited = Buffer.concat([data.subarray(0, 100_000), Buffer.from('a new head layer of some bytes'), data.subarray(100_000)]);
    const before = new Set(chunks.map((c) => c.sha256));
    const after = chunkBytes(edited);
    const changed = after.filter((c) => !before.has(c.sha256));
    expect(changed.length).toBeLessThanOrEqual(2);
    expect(changed.reduce((n, c) => n + c.length, 0)).toBeLessThan(2 * DEFAULT_CHUNKING.maxBytes);
  });

  it('a change in the middle leaves the chunks before and after it alone', () => {
    const edited = Buffer.from(data);
    for (let i = 6 * MiB; i < 6 * MiB + 4096; i++) edited[i] = (edited[i] ?? 0) ^ 0x5a;
    const before = new Set(chunks.map((c) => c.sha256));
    const changed = chunkBytes(edited).filter((c) => !before.has(c.sha256));
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.length).toBeLessThanOrEqual(2);
  });

  it('handles inputs shorter than the minimum and empty ones', () => {
    expect(chunkBytes(Buffer.from('tiny'))).toEqual([{ offset: 0, length: 4, sha256: sha(Buffer.from('tiny')) }]);
    expect(chunkBytes(Buffer.alloc(0))).toEqual([]);
  });

  it('streams a file to the same chunks, with its whole sha256 and length', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'perch-cdc-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'model.bin');
    writeFileSync(path, data);
    const r = await chunkFile(path);
    expect(r.chunks).toEqual(chunks);
    expect(r.sha256).toBe(sha(data));
    expect(r.length).toBe(data.length);
  });

  it('refuses parameters that cannot work', () => {
    expect(chunkingParamsSchema.safeParse({ minBytes: 64 * 1024, avgBytes: 300 * 1024, maxBytes: MiB }).success).toBe(false);
    expect(chunkingParamsSchema.safeParse({ minBytes: 64 * 1024, avgBytes: 256 * 1024, maxBytes: 2 * MiB }).success).toBe(false);
    expect(chunkingParamsSchema.safeParse({ minBytes: 512 * 1024, avgBytes: 256 * 1024, maxBytes: MiB }).success).toBe(false);
  });
});
