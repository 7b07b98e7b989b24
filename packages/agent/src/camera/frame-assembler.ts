/**
 * ffmpeg's rawvideo pipe is a byte stream; reads do not line up with frames.
 * This cuts it into exact frames, each in its own ArrayBuffer, so a frame
 * can be kept (for a snapshot) while the next ones are read.
 */
export class FrameAssembler {
  private current: Uint8Array;
  private filled = 0;

  constructor(
    readonly frameBytes: number,
    private readonly onFrame: (frame: Uint8Array) => void,
  ) {
    if (!(Number.isInteger(frameBytes) && frameBytes > 0)) throw new RangeError(`frame size must be a positive integer, got ${frameBytes}`);
    this.current = new Uint8Array(frameBytes);
  }

  push(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length) {
      const n = Math.min(this.frameBytes - this.filled, chunk.length - pos);
      this.current.set(chunk.subarray(pos, pos + n), this.filled);
      this.filled += n;
      pos += n;
      if (this.filled === this.frameBytes) {
        const frame = this.current;
        this.current = new Uint8Array(this.frameBytes);
        this.filled = 0;
        this.onFrame(frame);
      }
    }
  }

  /** Drops a partial frame, e.g. when ffmpeg restarts. */
  reset(): void {
    this.filled = 0;
  }
}
