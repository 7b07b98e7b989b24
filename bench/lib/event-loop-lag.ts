import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Sampling interval of the probe: fine enough to see blocks of a few milliseconds. */
const RESOLUTION_MS = 1;

/**
 * Main-thread event-loop lag while some work runs: how late a timer that is
 * due fires, i.e. how long an MQTT packet or HTTP request would wait.
 * Node's histogram records the whole interval between ticks, so the
 * sampling interval itself is subtracted. Enable/disable brackets the work;
 * figures add up over several brackets.
 */
export class EventLoopLag {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });

  enable(): void {
    this.histogram.enable();
  }

  disable(): void {
    this.histogram.disable();
  }

  async during<T>(work: () => Promise<T>): Promise<T> {
    this.enable();
    try {
      return await work();
    } finally {
      this.disable();
    }
  }

  get p99Ms(): number {
    return this.lagMs(this.histogram.percentile(99));
  }

  get maxMs(): number {
    return this.lagMs(this.histogram.max);
  }

  get samples(): number {
    return this.histogram.count;
  }

  private lagMs(ns: number): number {
    return this.histogram.count === 0 ? Number.NaN : Math.max(0, ns / 1e6 - RESOLUTION_MS);
  }
}
