/**
 * One client's publishes held back by its rate limit, released in the order
 * they came. One timer per client for the head of the line: timers of
 * different lengths may fire out of order (Node rounds them to whole
 * milliseconds), and a publish let through while others wait goes behind
 * them, so a client's messages are never reordered.
 */
export class HeldPublishes {
  private readonly line: { at: number; release: () => void }[] = [];
  private timer: NodeJS.Timeout | null = null;

  get size(): number {
    return this.line.length;
  }

  /** Releases `release` at `at` (performance.now() time), after everything held before it. */
  hold(at: number, release: () => void, now: number = performance.now()): void {
    this.line.push({ at, release });
    if (this.line.length === 1) this.arm(now);
  }

  /** Releases everything now (the client is gone: aedes finishes each one, and refuses it). */
  releaseAll(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const held of this.line.splice(0)) held.release();
  }

  private arm(now: number): void {
    const head = this.line[0];
    if (!head) return;
    // Unref'd: a held publish must not keep a stopping process alive.
    this.timer = setTimeout(() => this.due(), Math.max(0, head.at - now));
    this.timer.unref();
  }

  private due(): void {
    this.timer = null;
    const now = performance.now();
    for (let head = this.line[0]; head && head.at <= now; head = this.line[0]) {
      this.line.shift();
      head.release();
    }
    this.arm(now);
  }
}
