import { setTimeout as delay } from 'node:timers/promises';
import { TokenBucket } from './token-bucket.js';

export interface BandwidthLimits {
  /** bytes per second to one device; null: unlimited */
  perDevice: number | null;
  /** bytes per second to all devices together; null: unlimited */
  total: number | null;
}

/** A bucket holds this much of its rate, so a short idle spell lets one chunk out at once but never more than a tenth of a second's worth. */
const BURST_SECONDS = 0.1;
/** Device buckets are swept for idle (full) ones after this many new devices. */
const SWEEP_EVERY = 256;

/**
 * Paces artifact chunks: one token bucket per device and one for all of
 * them. A chunk waits until both allow it, so a device never gets more
 * than its own rate and all devices together never more than the total;
 * devices asking at the same time share the total in the order their
 * requests arrive.
 */
export class BandwidthLimiter {
  private readonly devices = new Map<string, TokenBucket>();
  private readonly total: TokenBucket | null;
  private addedSinceSweep = 0;

  constructor(readonly limits: BandwidthLimits) {
    this.total = limits.total === null ? null : new TokenBucket(limits.total, limits.total * BURST_SECONDS);
  }

  get limited(): boolean {
    return this.limits.perDevice !== null || this.limits.total !== null;
  }

  /** The most a transfer of `bytes` can get ahead of its rate: transfers take at least (bytes - burst) / rate. */
  burstBytes(which: 'perDevice' | 'total'): number {
    const rate = this.limits[which];
    return rate === null ? Number.POSITIVE_INFINITY : rate * BURST_SECONDS;
  }

  /**
   * Resolves when `bytes` may go to `deviceId`. The device's own bucket
   * first, then the total, so a device held back by its own rate does not
   * hold a share of the total it cannot use yet.
   */
  async acquire(deviceId: string, bytes: number): Promise<void> {
    if (this.limits.perDevice !== null) await sleep(this.deviceBucket(deviceId, this.limits.perDevice, performance.now()).reserve(bytes));
    if (this.total) await sleep(this.total.reserve(bytes));
  }

  private deviceBucket(deviceId: string, rate: number, now: number): TokenBucket {
    let b = this.devices.get(deviceId);
    if (!b) {
      if (++this.addedSinceSweep >= SWEEP_EVERY) this.sweep(now);
      b = new TokenBucket(rate, rate * BURST_SECONDS, now);
      this.devices.set(deviceId, b);
    }
    return b;
  }

  private sweep(now: number): void {
    this.addedSinceSweep = 0;
    for (const [id, b] of this.devices) if (b.isFull(now)) this.devices.delete(id);
  }
}

function sleep(ms: number): Promise<void> | undefined {
  return ms > 0 ? delay(ms) : undefined;
}
