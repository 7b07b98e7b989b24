import { describe, expect, it } from 'vitest';
import { emptyHealthStats, judgeHealth, percentile, type HealthStats, type HealthThresholds } from './health-verdict.js';

const t: HealthThresholds = { maxErrorRate: 0.05, maxLatencyFactor: 5, latencyFloorMs: 2, minFrames: 20 };

function stats(over: Partial<HealthStats>): HealthStats {
  return { ...emptyHealthStats(), ...over };
}

const runs = (n: number, ms: number) => Array.from({ length: n }, () => ms);

describe('judgeHealth', () => {
  it('keeps watching while nothing is clearly wrong, and passes at the end', () => {
    const s = stats({ okFrames: 40, perFrameMs: runs(40, 1) });
    expect(judgeHealth(s, 1, t, false)).toBeNull();
    expect(judgeHealth(s, 1, t, true)).toEqual({ ok: true, summary: '40 frames ran, 0 failed, p95 1.00 ms per frame' });
  });

  it('fails early on an error rate over the limit once minFrames frames ran', () => {
    const s = stats({ okFrames: 18, failedFrames: 2, perFrameMs: runs(18, 1), lastError: 'model output 0 is NaN: not a finite number' });
    expect(judgeHealth(s, 1, t, false)).toEqual({
      ok: false,
      reason: 'health window: 2 of 20 frames failed (10.0%, the limit is 5.0%); last error: model output 0 is NaN: not a finite number',
    });
  });

  it('does not judge the error rate on too few frames, unless at the end every frame failed', () => {
    expect(judgeHealth(stats({ okFrames: 3, failedFrames: 1 }), 1, t, false)).toBeNull();
    expect(judgeHealth(stats({ okFrames: 3, failedFrames: 1, perFrameMs: runs(3, 1) }), 1, t, true)).toMatchObject({ ok: true });
    expect(judgeHealth(stats({ failedFrames: 3 }), 1, t, true)).toMatchObject({ ok: false, reason: expect.stringMatching(/^health window: 3 of 3 frames failed/) });
  });

  it('fails at the end on a p95 over the factor times the golden run time', () => {
    const s = stats({ okFrames: 40, perFrameMs: [...runs(36, 1), ...runs(4, 30)] });
    expect(judgeHealth(s, 1, t, false)).toBeNull();
    expect(judgeHealth(s, 1, t, true)).toEqual({
      ok: false,
      reason: "health window: p95 run time 30.00 ms per frame exceeds 5.00 ms (5 x the golden input's 1.00 ms, at least 2.00 ms)",
    });
    // The same run times pass against a slower baseline.
    expect(judgeHealth(s, 10, t, true)).toMatchObject({ ok: true });
  });

  it('never fails latency below the floor, nor on too few runs', () => {
    expect(judgeHealth(stats({ okFrames: 40, perFrameMs: runs(40, 1.9) }), 0.1, t, true)).toMatchObject({ ok: true });
    expect(judgeHealth(stats({ okFrames: 5, perFrameMs: runs(5, 100) }), 1, t, true)).toMatchObject({ ok: true });
  });

  it('fails at once when the worker died', () => {
    expect(judgeHealth(stats({ okFrames: 1, workerDied: 'inference worker exited with code 1' }), 1, t, false)).toEqual({
      ok: false,
      reason: 'health window: the inference worker died: inference worker exited with code 1',
    });
  });

  it('passes a window in which no frame ran: nothing to blame the model for', () => {
    expect(judgeHealth(emptyHealthStats(), 1, t, true)).toEqual({ ok: true, summary: '0 frames ran, 0 failed, no runs' });
  });
});

describe('percentile', () => {
  it('nearest rank', () => {
    expect(percentile([], 0.95)).toBeNull();
    expect(percentile([5], 0.95)).toBe(5);
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 0.95)).toBe(95);
  });
});
