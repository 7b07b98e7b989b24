import type { Logger } from 'pino';

/**
 * Logs a limit a client ran into once per client and limit per window, the
 * line saying how many more it ran into since the last one, so a client that
 * floods the broker cannot flood the log as well.
 */
export class LimitWarnings {
  private readonly last = new Map<string, { at: number; since: number }>();

  constructor(
    private readonly log: Logger,
    readonly windowMs = 60_000,
  ) {}

  warn(who: string, limit: string, fields: Record<string, unknown>, message: string, now: number = performance.now()): void {
    const key = `${who}\n${limit}`;
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.windowMs) {
      seen.since++;
      return;
    }
    this.last.set(key, { at: now, since: 0 });
    this.log.warn({ clientId: who, limit, ...fields, ...(seen && seen.since > 0 ? { moreSinceLastWarning: seen.since } : {}) }, message);
  }

  /** Ends windows that are over, with a last line for those that ran into the limit again meanwhile. */
  sweep(now: number = performance.now()): void {
    for (const [key, seen] of this.last) {
      if (now - seen.at < this.windowMs) continue;
      this.last.delete(key);
      const [who, limit] = key.split('\n');
      if (seen.since > 0) this.log.warn({ clientId: who, limit, moreSinceLastWarning: seen.since }, 'mqtt client kept running into a broker limit');
    }
  }
}
