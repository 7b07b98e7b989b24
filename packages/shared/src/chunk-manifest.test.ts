import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeChunkManifest, encodeChunkManifest, makeChunkManifest } from './chunk-manifest.js';
import { DEFAULT_CHUNKING, chunkBytes } from './content-chunking.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('chunk manifest', () => {
  const data = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const manifest = makeChunkManifest({ sha256: sha(data), length: data.length }, DEFAULT_CHUNKING, chunkBytes(data));

  it('round-trips through its stored bytes, which are the same for the same artifact', () => {
    const bytes = encodeChunkManifest(manifest);
    const back = decodeChunkManifest(bytes);
    expect(back.ok && back.value).toEqual(manifest);
    expect(sha(encodeChunkManifest(makeChunkManifest({ sha256: sha(data), length: data.length }, DEFAULT_CHUNKING, chunkBytes(data))))).toBe(sha(bytes));
  });

  it('refuses gaps, overlaps, a wrong length and chunks over the maximum', () => {
    const raw = JSON.parse(encodeChunkManifest(manifest).toString()) as { chunks: { offset: number; length: number }[]; length: number };
    const variants: [string, (m: typeof raw) => void, RegExp][] = [
      ['gap', (m) => void (m.chunks[1]!.offset += 1), /chunks\.1\.offset: expected offset/],
      ['overlap', (m) => void (m.chunks[1]!.offset -= 1), /chunks\.1\.offset/],
      ['length', (m) => void (m.length += 1), /length: chunks cover/],
      ['too long', (m) => void (m.chunks[0]!.length = 2 * 1024 * 1024), /chunks\.0\.length/],
    ];
    for (const [, mutate, why] of variants) {
      const m = structuredClone(raw);
      mutate(m);
      const d = decodeChunkManifest(Buffer.from(JSON.stringify(m)));
      expect(d.ok).toBe(false);
      expect(!d.ok && d.error).toMatch(why);
    }
  });
});
