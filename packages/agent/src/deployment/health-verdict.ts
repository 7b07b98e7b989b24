/** What a new model did in its health window so far. */
export interface HealthStats {
  /** frames that ran and gave a result */
  okFrames: number;
  /** frames whose run failed (an error in the worker, NaN output, the worker gone) */
  failedFrames: number;
  /** one sample per successful run: the worker's run time divided by the frames it carried */
  perFrameMs: number[];
  /** the last run error, for the reason */
  lastError: string | null;
  /** set when the model's worker died during the window */
  workerDied: string | null;
}

export interface HealthThresholds {
  maxErrorRate: number;
  maxLatencyFactor: number;
  latencyFloorMs: number;
  minFrames: number;
}

export type HealthVerdict = { ok: true; summary: string } | { ok: false; reason: string };

export function emptyHealthStats(): HealthStats {
  return { okFrames: 0, failedFrames: 0, perFrameMs: [], lastError: null, workerDied: null };
}

/**
 * Judges a health window. While it runs (`final` false) only a clear
 * failure decides: a dead worker, or an error rate over the limit on at
 * least minFrames frames; otherwise null, keep watching. At its end the
 * p95 run time per frame is held against maxLatencyFactor times the golden
 * input's run time (never below latencyFloorMs), and a window in which every
 * frame failed fails however few there were. A window with no frames at all
 * (no camera delivered) passes: there is nothing to blame the model for.
 */
export function judgeHealth(stats: HealthStats, baselineMs: number | null, t: HealthThresholds, final: boolean): HealthVerdict | null {
  if (stats.workerDied !== null) return { ok: false, reason: `health window: the inference worker died: ${stats.workerDied}` };
  const total = stats.okFrames + stats.failedFrames;
  const rate = total === 0 ? 0 : stats.failedFrames / total;
  if (rate > t.maxErrorRate && (total >= t.minFrames || (final && stats.okFrames === 0))) {
    const last = stats.lastError === null ? '' : `; last error: ${stats.lastError}`;
    return { ok: false, reason: `health window: ${stats.failedFrames} of ${total} frames failed (${percent(rate)}, the limit is ${percent(t.maxErrorRate)})${last}` };
  }
  if (!final) return null;
  const p95 = percentile(stats.perFrameMs, 0.95);
  const limit = Math.max(t.latencyFloorMs, baselineMs === null ? 0 : t.maxLatencyFactor * baselineMs);
  if (p95 !== null && stats.perFrameMs.length >= t.minFrames && p95 > limit) {
    const base = baselineMs === null ? '' : ` (${t.maxLatencyFactor} x the golden input's ${ms(baselineMs)}, at least ${ms(t.latencyFloorMs)})`;
    return { ok: false, reason: `health window: p95 run time ${ms(p95)} per frame exceeds ${ms(limit)}${base}` };
  }
  const latency = p95 === null ? 'no runs' : `p95 ${ms(p95)} per frame`;
  return { ok: true, summary: `${stats.okFrames} frames ran, ${stats.failedFrames} failed, ${latency}` };
}

/** The verdict at the window's end, which always decides. */
export function finalHealthVerdict(stats: HealthStats, baselineMs: number | null, t: HealthThresholds): HealthVerdict {
  return judgeHealth(stats, baselineMs, t, true) ?? { ok: true, summary: 'no verdict' };
}

/** Nearest-rank percentile; null for no samples. */
export function percentile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null;
}

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number) => `${x.toFixed(2)} ms`;
