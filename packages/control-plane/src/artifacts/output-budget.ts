/**
 * A bound on bytes handed out and not yet done with (a device's chunk
 * frames the broker has not yet written to its socket), granted in the
 * order asked. Whatever a device asks for at once, only this much of it is
 * read into memory; the rest waits here as requests.
 */
export class OutputBudget {
  private used = 0;
  private readonly waiters: { bytes: number; grant: () => void }[] = [];

  constructor(readonly maxBytes: number) {}

  /** Resolves when `bytes` may go out; an amount larger than the budget goes alone. */
  acquire(bytes: number): Promise<void> {
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waiters.push({ bytes, grant }));
  }

  release(bytes: number): void {
    this.used -= bytes;
    for (let next = this.waiters[0]; next && this.fits(next.bytes); next = this.waiters[0]) {
      this.waiters.shift();
      this.used += next.bytes;
      next.grant();
    }
  }

  /** Nothing out and nobody waiting: the budget can be forgotten. */
  get idle(): boolean {
    return this.used === 0 && this.waiters.length === 0;
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.maxBytes;
  }
}
