import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { median } from './stats.js';

/** Sampling interval of the lag probe: fine enough to see blocks of a few milliseconds. */
const RESOLUTION_MS = 1;

/**
 * What some work costs the main thread, measured while it runs:
 * - utilisation: the share of time the event loop was busy rather than
 *   waiting for I/O, i.e. the CPU left for MQTT, HTTP and camera pipes;
 * - lag: how late a timer that is due fires, i.e. how long a packet or
 *   request would wait. Node's histogram records the whole interval
 *   between ticks, so the sampling interval itself is subtracted.
 * Utilisation adds up over several `during` brackets. Lag histograms cannot:
 * a re-enabled histogram records the disabled gap as one huge tick and an
 * interval histogram cannot be merged into another, so each bracket gets a
 * fresh one and the lag is the median of the brackets' p99s.
 */
export class MainThreadProbe {
  private readonly lagP99sMs: number[] = [];
  private readonly lagMaxesMs: number[] = [];
  private activeMs = 0;
  private idleMs = 0;

  async during<T>(work: () => Promise<T>): Promise<T> {
    const elu: EventLoopUtilization = performance.eventLoopUtilization();
    const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    delay.enable();
    try {
      return await work();
    } finally {
      delay.disable();
      if (delay.count > 0) {
        this.lagP99sMs.push(lagMs(delay.percentile(99)));
        this.lagMaxesMs.push(lagMs(delay.max));
      }
      const d = performance.eventLoopUtilization(elu);
      this.activeMs += d.active;
      this.idleMs += d.idle;
    }
  }

  /** Busy share of the event loop, 0..1. */
  get utilization(): number {
    const total = this.activeMs + this.idleMs;
    return total > 0 ? this.activeMs / total : Number.NaN;
  }

  /** Median over brackets of each bracket's p99 lag. */
  get lagP99Ms(): number {
    return median(this.lagP99sMs);
  }

  /** Worst single lag seen in any bracket. */
  get lagMaxMs(): number {
    return this.lagMaxesMs.length === 0 ? Number.NaN : Math.max(...this.lagMaxesMs);
  }
}

function lagMs(ns: number): number {
  return Math.max(0, ns / 1e6 - RESOLUTION_MS);
}
