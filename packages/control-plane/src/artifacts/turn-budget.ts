/**
 * Spreads chunk work over event-loop turns: at most `bytesPerTurn` of
 * chunks are read and handed to the broker per turn, then the loop goes
 * round (socket reads, telemetry, the API) before the next batch. Without
 * it, one socket read carrying hundreds of chunk requests (a fleet's
 * windows) would be served in a single turn, and every other message would
 * wait that long.
 */
export class TurnBudget {
  private used = 0;
  private resetScheduled = false;
  private readonly waiters: { bytes: number; grant: () => void }[] = [];

  constructor(readonly bytesPerTurn: number) {}

  /** Resolves in the order asked, in a turn with room for `bytes` (a larger amount gets a turn of its own). */
  take(bytes: number): Promise<void> {
    this.scheduleReset();
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waiters.push({ bytes, grant }));
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.bytesPerTurn;
  }

  private scheduleReset(): void {
    if (this.resetScheduled) return;
    this.resetScheduled = true;
    setImmediate(() => {
      this.resetScheduled = false;
      this.used = 0;
      for (let next = this.waiters[0]; next && this.fits(next.bytes); next = this.waiters[0]) {
        this.waiters.shift();
        this.used += next.bytes;
        next.grant();
      }
      if (this.waiters.length > 0 || this.used > 0) this.scheduleReset();
    });
  }
}
