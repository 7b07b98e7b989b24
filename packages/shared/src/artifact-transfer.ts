import { z } from 'zod';
import { sha256Schema } from './model-metadata.js';
import { decodeJson, type Decoded } from './payload-codec.js';

/**
 * Artifacts travel over the one MQTT connection in chunks the device asks
 * for: a JSON request on `artifact/request`, a binary frame on
 * `artifact/chunk`. Binary, because base64 in JSON would cost a third more.
 */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/**
 * The most one request asks for, by default: the largest chunk, so every
 * chunk of a manifest comes in one request and is checked on its own (a
 * smaller request size fetches larger chunks in pieces). In
 * bench/delivery.ts 1 MiB requests were at least as fast as 256 KiB ones
 * (~250-310 against ~240 MiB/s on loopback), 64 KiB ones half as fast.
 */
export const DEFAULT_CHUNK_BYTES = MAX_CHUNK_BYTES;

export const chunkRequestSchema = z.object({
  requestId: z.string().min(1).max(64),
  sha256: sha256Schema,
  offset: z.number().int().nonnegative(),
  length: z.number().int().positive().max(MAX_CHUNK_BYTES),
});
export type ChunkRequest = z.infer<typeof chunkRequestSchema>;

export const chunkErrorCodeSchema = z.enum(['not-found', 'bad-range', 'internal']);

export const chunkHeaderSchema = z.union([
  z.object({
    requestId: z.string().min(1).max(64),
    sha256: sha256Schema,
    offset: z.number().int().nonnegative(),
    length: z.number().int().nonnegative().max(MAX_CHUNK_BYTES),
    /** total artifact length, so the device can check the signed length */
    total: z.number().int().nonnegative(),
    chunkSha256: sha256Schema,
  }),
  z.object({
    requestId: z.string().min(1).max(64),
    sha256: sha256Schema,
    error: z.object({ code: chunkErrorCodeSchema, message: z.string().max(1000) }),
  }),
]);
export type ChunkHeader = z.infer<typeof chunkHeaderSchema>;

/** Frame: 'PCH1' magic, uint32 big-endian header length, JSON header, data bytes. */
const MAGIC = Buffer.from('PCH1', 'ascii');
const MAX_HEADER_BYTES = 4096;

export function encodeChunkFrame(header: ChunkHeader, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json, data]);
}

/** Room to leave in front of a chunk's data so its frame can be built around it: magic, length, the largest header. */
export const CHUNK_FRAME_HEADROOM = 8 + MAX_HEADER_BYTES;

/**
 * The frame of data already placed at `buf[CHUNK_FRAME_HEADROOM..]` (its
 * `header.length` bytes; `buf` may be longer): the header is written just in
 * front of it and the frame is a view of `buf`. A server reads a chunk
 * straight into its frame, with no second copy.
 */
export function frameAroundChunk(buf: Buffer, header: ChunkHeader & { length: number }): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  if (json.length > MAX_HEADER_BYTES) throw new Error(`chunk frame header of ${json.length} bytes is over ${MAX_HEADER_BYTES}`);
  const start = CHUNK_FRAME_HEADROOM - 8 - json.length;
  MAGIC.copy(buf, start);
  buf.writeUInt32BE(json.length, start + 4);
  json.copy(buf, start + 8);
  return buf.subarray(start, CHUNK_FRAME_HEADROOM + header.length);
}

export function decodeChunkFrame(frame: Buffer): Decoded<{ header: ChunkHeader; data: Buffer }> {
  if (frame.length < 8 || !frame.subarray(0, 4).equals(MAGIC)) return { ok: false, error: 'chunk frame: bad magic' };
  const len = frame.readUInt32BE(4);
  if (len > MAX_HEADER_BYTES || 8 + len > frame.length) return { ok: false, error: `chunk frame: bad header length ${len}` };
  const header = decodeJson(chunkHeaderSchema, frame.subarray(8, 8 + len));
  if (!header.ok) return { ok: false, error: `chunk frame header: ${header.error}` };
  const data = frame.subarray(8 + len);
  if ('length' in header.value && header.value.length !== data.length) {
    return { ok: false, error: `chunk frame: header says ${header.value.length} bytes, carries ${data.length}` };
  }
  return { ok: true, value: { header: header.value, data } };
}
