/**
 * A token bucket that lends: a taker reserves its bytes at once, the level
 * may go below zero, and the taker waits until the debt is paid back at
 * the bucket's rate. Takers are served in the order they arrive, a large
 * take never starves behind small ones, and over any stretch of time no
 * more than `burstBytes + rate x seconds` goes out. Times in milliseconds.
 */
export class TokenBucket {
  private level: number;
  private last: number;

  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes: number,
    now: number = performance.now(),
  ) {
    if (!(bytesPerSecond > 0) || !(burstBytes >= 0)) throw new Error(`token bucket needs a positive rate and a burst >= 0, got ${bytesPerSecond} and ${burstBytes}`);
    this.level = burstBytes;
    this.last = now;
  }

  /** Takes `bytes` now; returns how many ms the taker must wait before sending them. */
  reserve(bytes: number, now: number = performance.now()): number {
    this.refill(now);
    this.level -= bytes;
    return this.level >= 0 ? 0 : (-this.level * 1000) / this.bytesPerSecond;
  }

  /** Takes `amount` only when the bucket holds it now, never lending; false takes nothing (for takers that drop rather than wait). */
  tryTake(amount: number, now: number = performance.now()): boolean {
    this.refill(now);
    if (this.level < amount) return false;
    this.level -= amount;
    return true;
  }

  /** Full again: nobody has taken from it for a while, so it can be forgotten. */
  isFull(now: number = performance.now()): boolean {
    this.refill(now);
    return this.level >= this.burstBytes;
  }

  private refill(now: number): void {
    this.level = Math.min(this.burstBytes, this.level + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }
}
