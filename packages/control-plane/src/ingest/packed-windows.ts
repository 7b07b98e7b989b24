import type { ReceivedWindow } from './received-telemetry.js';

/**
 * A batch of received windows as one message to the writer thread: every
 * payload copied into one buffer that is transferred, not cloned. Cloning
 * each payload would copy the whole socket read it is a view of.
 */
export interface PackedWindows {
  deviceIds: string[];
  receivedAt: number[];
  /** where each payload ends in `bytes` */
  ends: number[];
  bytes: Uint8Array;
}

export function packWindows(batch: readonly ReceivedWindow[]): { packed: PackedWindows; transfer: ArrayBuffer[] } {
  let total = 0;
  for (const r of batch) total += r.payload.byteLength;
  // Its own ArrayBuffer (Buffer.allocUnsafe may hand out a slice of Node's shared pool, which must not be transferred).
  const bytes = new Uint8Array(total);
  const ends: number[] = [];
  let at = 0;
  for (const r of batch) {
    bytes.set(r.payload, at);
    at += r.payload.byteLength;
    ends.push(at);
  }
  const packed = { deviceIds: batch.map((r) => r.deviceId), receivedAt: batch.map((r) => r.receivedAt), ends, bytes };
  return { packed, transfer: [bytes.buffer] };
}

export function unpackWindows(p: PackedWindows): ReceivedWindow[] {
  let start = 0;
  return p.ends.map((end, i) => {
    const r = { deviceId: p.deviceIds[i] as string, payload: p.bytes.subarray(start, end), receivedAt: p.receivedAt[i] as number };
    start = end;
    return r;
  });
}
