import { CHUNK_FRAME_HEADROOM } from '@perch/shared';

/**
 * Reusable buffers for chunk frames. Every frame served used to be a fresh
 * buffer, and at a few hundred MB/s that churn made the garbage collector
 * stop the control plane (broker included) for 10-40 ms several times a
 * second, which is what device messages waited on during a delivery. A
 * buffer comes back only once the broker says the device's connection has
 * written all of it; one it cannot vouch for is left to the collector.
 * Sizes are powers of two (plus the frame's headroom), and at most
 * `maxPooledBytes` are kept.
 */
export class FramePool {
  private readonly free = new Map<number, Buffer[]>();
  private pooled = 0;

  constructor(readonly maxPooledBytes: number) {}

  /** A buffer with room for the frame of a chunk of `length` bytes. */
  take(length: number): Buffer {
    const size = sizeFor(length);
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.pooled -= buf.length;
      return buf;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  give(buf: Buffer): void {
    if (this.pooled + buf.length > this.maxPooledBytes || buf.length !== sizeFor(buf.length - CHUNK_FRAME_HEADROOM)) return;
    let list = this.free.get(buf.length);
    if (!list) {
      list = [];
      this.free.set(buf.length, list);
    }
    list.push(buf);
    this.pooled += buf.length;
  }
}

function sizeFor(length: number): number {
  return CHUNK_FRAME_HEADROOM + 2 ** Math.ceil(Math.log2(Math.max(length, 4096)));
}
