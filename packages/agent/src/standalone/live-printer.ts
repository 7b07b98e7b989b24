import { performance } from 'node:perf_hooks';
import type { CameraState } from '@perch/shared';
import type { FrameObserver } from '../metrics/frame-observer.js';

interface Interval {
  inferred: number;
  dropped: number;
  errors: number;
  /** frame arrival to result, ms */
  ages: number[];
  last: { label: string; confidence: number } | null;
}

const fresh = (): Interval => ({ inferred: 0, dropped: 0, errors: 0, ages: [], last: null });

/** The q-quantile of sorted values (nearest rank). */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

/**
 * Standalone mode's live view: every intervalMs, one line per camera with its
 * latest prediction, the inferred frames per second and the frame age (frame
 * arrival to its prediction) p50/p95 over that interval.
 */
export class LivePrinter implements FrameObserver {
  private readonly intervals = new Map<string, Interval>();
  private timer: NodeJS.Timeout | null = null;
  private since = performance.now();

  constructor(
    private readonly cameraIds: readonly string[],
    private readonly states: () => CameraState[],
    private readonly write: (line: string) => void,
    private readonly intervalMs = 1000,
  ) {
    for (const id of cameraIds) this.intervals.set(id, fresh());
  }

  start(): void {
    if (this.timer) return;
    this.since = performance.now();
    this.timer = setInterval(() => this.flush(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  frameDropped(cameraId: string): void {
    this.interval(cameraId).dropped++;
  }

  inferenceError(cameraId: string): void {
    this.interval(cameraId).errors++;
  }

  frameInferred(cameraId: string, label: string, confidence: number, latencyMs: number): void {
    const i = this.interval(cameraId);
    i.inferred++;
    i.ages.push(latencyMs);
    i.last = { label, confidence };
  }

  /** Prints one line per camera and starts the next interval. */
  flush(now = performance.now()): void {
    const seconds = Math.max(1e-3, (now - this.since) / 1000);
    this.since = now;
    const states = new Map(this.states().map((s) => [s.cameraId, s]));
    for (const id of this.cameraIds) {
      const i = this.interval(id);
      this.intervals.set(id, fresh());
      const parts: string[] = [];
      if (i.last) {
        const ages = i.ages.sort((a, b) => a - b);
        parts.push(`${i.last.label} ${i.last.confidence.toFixed(2)}`);
        parts.push(`${(i.inferred / seconds).toFixed(1)} fps`);
        parts.push(`frame age p50 ${Math.round(quantile(ages, 0.5))} ms p95 ${Math.round(quantile(ages, 0.95))} ms`);
      } else {
        const s = states.get(id);
        parts.push(`no prediction (camera ${s?.state ?? 'offline'}${s?.lastError !== undefined ? `: ${s.lastError}` : ''})`);
      }
      if (i.dropped > 0) parts.push(`${i.dropped} dropped`);
      if (i.errors > 0) parts.push(`${i.errors} inference errors`);
      this.write(`${id}: ${parts.join(' | ')}`);
    }
  }

  private interval(cameraId: string): Interval {
    let i = this.intervals.get(cameraId);
    if (!i) {
      i = fresh();
      this.intervals.set(cameraId, i);
    }
    return i;
  }
}
