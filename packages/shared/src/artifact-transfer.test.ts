import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CHUNK_FRAME_HEADROOM, decodeChunkFrame, encodeChunkFrame, frameAroundChunk } from './artifact-transfer.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('artifact chunk frames', () => {
  it('round-trips a data frame and an error frame', () => {
    const data = Buffer.from('some model bytes');
    const frame = encodeChunkFrame({ requestId: 'r1', sha256: sha(data), offset: 0, length: data.length, total: 100, chunkSha256: sha(data) }, data);
    const d = decodeChunkFrame(frame);
    expect(d.ok && d.value.data.equals(data)).toBe(true);
    const e = decodeChunkFrame(encodeChunkFrame({ requestId: 'r2', sha256: sha(data), error: { code: 'not-found', message: 'gone' } }));
    expect(e.ok && 'error' in e.value.header && e.value.header.error.code).toBe('not-found');
  });

  it('refuses frames that lie about their size or are not frames', () => {
    const data = Buffer.from('abc');
    const frame = encodeChunkFrame({ requestId: 'r1', sha256: sha(data), offset: 0, length: 3, total: 3, chunkSha256: sha(data) }, data);
    const extra = Buffer.concat([frame, Buffer.from('more')]);
    expect(decodeChunkFrame(extra)).toEqual({ ok: false, error: expect.stringMatching(/says 3 bytes, carries 7/) });
    expect(decodeChunkFrame(Buffer.from('{"json":true}')).ok).toBe(false);
    const hugeHeader = Buffer.from(frame);
    hugeHeader.writeUInt32BE(1e9, 4);
    expect(decodeChunkFrame(hugeHeader)).toEqual({ ok: false, error: expect.stringMatching(/bad header length/) });
  });

  it('builds a frame around data read in place, byte for byte the encoded one', () => {
    const data = Buffer.from('chunk bytes read straight into the frame');
    const header = { requestId: 'r3', sha256: sha(data), offset: 8, length: data.length, total: 100, chunkSha256: sha(data) };
    const buf = Buffer.alloc(CHUNK_FRAME_HEADROOM + data.length);
    data.copy(buf, CHUNK_FRAME_HEADROOM);
    const frame = frameAroundChunk(buf, header);
    expect(frame.equals(encodeChunkFrame(header, data))).toBe(true);
    expect(frame.buffer).toBe(buf.buffer);
  });
});
