/**
 * Exponential backoff with full jitter: the delay is uniform in
 * [0, min(max, min * 2^attempt)]. Full jitter spreads a fleet that lost the
 * control plane at the same instant over the whole window, instead of
 * sending every box back at the same fixed interval.
 */
export class JitteredBackoff {
  private attempt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {
    if (!(minMs > 0 && maxMs >= minMs)) throw new RangeError(`backoff needs 0 < minMs <= maxMs, got ${minMs}, ${maxMs}`);
  }

  /** The delay before the next attempt; each call widens the window up to maxMs. */
  next(): number {
    // 2^attempt is capped before it can overflow to Infinity.
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(this.random() * ceiling);
  }

  /** After a success, start again from the smallest window. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
