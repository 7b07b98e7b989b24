import { performance } from 'node:perf_hooks';
import { emptyHistogram, LATENCY_SPEC, observe, type Histogram } from '@perch/shared';

/**
 * Measures how late the main thread runs a timer: the agent's proof that MQTT,
 * HTTP and ffmpeg's pipes are served promptly while inference runs. Sampled
 * into the contract's fixed-bin latency histogram, so windows merge like every
 * other statistic (node's own monitorEventLoopDelay keeps a histogram whose
 * bins are not the contract's).
 */
export class EventLoopLag {
  private timer: NodeJS.Timeout | null = null;
  private expected = 0;
  private window: Histogram = emptyHistogram(LATENCY_SPEC);

  constructor(private readonly intervalMs = 50) {}

  start(): void {
    if (this.timer) return;
    this.expected = performance.now() + this.intervalMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      observe(this.window, Math.max(0, now - this.expected));
      this.expected = now + this.intervalMs;
    }, this.intervalMs);
    // A monitor must never keep the process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The lag samples since the last call, and a fresh window. */
  takeWindow(): Histogram {
    const w = this.window;
    this.window = emptyHistogram(LATENCY_SPEC);
    return w;
  }
}
