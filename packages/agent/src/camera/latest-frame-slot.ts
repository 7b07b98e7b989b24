export interface WaitingFrame {
  frame: Uint8Array;
  /** performance.now() when the whole frame had arrived */
  arrivedAt: number;
}

/**
 * Holds at most one frame per camera: when inference is slower than the
 * camera, the newest frame wins and the one it replaces counts as dropped,
 * so latency never grows into a backlog.
 */
export class LatestFrameSlot {
  private waiting: WaitingFrame | null = null;
  private lastArrivedAt = Number.NaN;
  private intervalMs = Number.NaN;

  /** Returns true when a waiting frame was replaced (dropped). */
  put(frame: WaitingFrame): boolean {
    const replaced = this.waiting !== null;
    this.waiting = frame;
    const gap = frame.arrivedAt - this.lastArrivedAt;
    if (gap > 0) this.intervalMs = Number.isNaN(this.intervalMs) ? gap : 0.8 * this.intervalMs + 0.2 * gap;
    this.lastArrivedAt = frame.arrivedAt;
    return replaced;
  }

  /**
   * Whether this camera's next frame should arrive by `deadline`, from the
   * spacing of its last frames. One that is a whole interval late (stalled,
   * gone) is not counted on; one with no rhythm yet is, for a second.
   */
  expectsFrameBy(deadline: number, now: number): boolean {
    if (Number.isNaN(this.intervalMs)) return now - this.lastArrivedAt < 1000;
    const next = this.lastArrivedAt + this.intervalMs;
    return next <= deadline && now - next < this.intervalMs;
  }

  take(): WaitingFrame | null {
    const w = this.waiting;
    this.waiting = null;
    return w;
  }

  get hasFrame(): boolean {
    return this.waiting !== null;
  }

  clear(): void {
    this.waiting = null;
  }
}
