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

  /** Returns true when a waiting frame was replaced (dropped). */
  put(frame: WaitingFrame): boolean {
    const replaced = this.waiting !== null;
    this.waiting = frame;
    return replaced;
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
