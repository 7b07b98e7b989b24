import { RunningEstimate } from '../inference/running-estimate.js';

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
  private readonly interval = new RunningEstimate();

  /** Returns true when a waiting frame was replaced (dropped). */
  put(frame: WaitingFrame): boolean {
    const replaced = this.waiting !== null;
    this.waiting = frame;
    const gap = frame.arrivedAt - this.lastArrivedAt;
    if (gap > 0) this.interval.add(gap);
    this.lastArrivedAt = frame.arrivedAt;
    return replaced;
  }

  /**
   * Whether this camera's next frame should arrive by `deadline`, from the
   * spacing of its last frames. One that is a whole interval late (stalled,
   * gone) is not counted on; one with no rhythm yet is, for a second.
   */
  expectsFrameBy(deadline: number, now: number): boolean {
    const interval = this.interval.value;
    if (interval === undefined) return now - this.lastArrivedAt < 1000;
    const next = this.lastArrivedAt + interval;
    return next <= deadline && now - next < interval;
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
