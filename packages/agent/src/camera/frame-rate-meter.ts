/** Frames per second over a sliding window of recent arrival times (performance.now() ms). */
export class FrameRateMeter {
  private readonly arrivals: number[] = [];

  constructor(private readonly windowMs = 5000) {}

  add(at: number): void {
    this.arrivals.push(at);
    this.trim(at);
  }

  /**
   * Rate over the span actually covered (at least one frame interval of
   * `nominalFps`), so a camera that has just started is not under-reported.
   */
  rate(now: number, nominalFps: number): number {
    this.trim(now);
    const first = this.arrivals[0];
    if (first === undefined) return 0;
    const span = Math.max(now - first, 1000 / nominalFps);
    return Math.round((this.arrivals.length / span) * 1000 * 100) / 100;
  }

  clear(): void {
    this.arrivals.length = 0;
  }

  private trim(now: number): void {
    while (this.arrivals.length > 0 && (this.arrivals[0] as number) < now - this.windowMs) this.arrivals.shift();
  }
}
