import { emptyHistogram, LATENCY_SPEC, observe } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { emptyCohortStats, emptyShadowStats, type CohortStats } from './cohort-stats.js';
import { decide, evaluateGates, requiredDevices, type GateInputs } from './gates.js';
import { parseRolloutSpec } from './rollout-spec.js';
import type { GateEvaluation } from './rollout-store.js';

const gates = parseRolloutSpec({ model: { name: 'm', version: '1' }, stages: [{ percent: 100, soakSeconds: 0 }] }).gates;

/** Stats of `devices` devices, `frames` frames each, top-1 labels in the given mix, each frame taking `latencyMs`. */
function stats(devices: number, frames: number, mix: Record<string, number>, latencyMs: number, extra: Partial<CohortStats> = {}): CohortStats {
  const s = emptyCohortStats();
  const total = Object.values(mix).reduce((a, b) => a + b, 0);
  for (let d = 0; d < devices; d++) s.devices.add(`box-${d}`);
  s.windows = devices;
  s.framesReceived = devices * frames;
  s.framesInferred = devices * frames;
  for (const [label, w] of Object.entries(mix)) s.classCounts[label] = Math.round((w / total) * devices * frames);
  s.latency = emptyHistogram(LATENCY_SPEC);
  observe(s.latency, latencyMs, devices * frames);
  return Object.assign(s, extra);
}

const mix = { cat: 6, dog: 3, empty: 1 };

function inputs(over: Partial<GateInputs> = {}): GateInputs {
  return {
    gates,
    phase: 'replace',
    cohortSize: 5,
    deployment: { succeeded: 5, failed: 0, failures: [] },
    evidence: { canary: stats(5, 100, mix, 20), shadow: emptyShadowStats(), control: stats(45, 100, mix, 20) },
    baseline: stats(5, 100, mix, 20),
    ...over,
  };
}

const byGate = (evals: GateEvaluation[]) => Object.fromEntries(evals.map((g) => [g.gate, g]));

describe('gates', () => {
  it('pass a canary that looks like the control cohort and its own past', () => {
    const g = byGate(evaluateGates(inputs()));
    for (const name of ['deployment', 'min-devices', 'min-frames', 'error-rate', 'latency-p95-ratio', 'skipped-frames', 'prediction-js']) expect(g[name]?.verdict, name).toBe('pass');
    // 500 frames: few enough for the chi-square test to count.
    expect(g['prediction-chi-square']?.verdict).toBe('pass');
    expect(g['latency-p95-ratio']?.value).toBeCloseTo(1, 6);
    expect(g['prediction-js']?.value).toBeCloseTo(0, 6);
    expect(decide(evaluateGates(inputs()), true, false)).toEqual({ verdict: 'pass' });
    expect(decide(evaluateGates(inputs()), false, false)).toEqual({ verdict: 'wait' });
  });

  it('fail deployment failures over the threshold, counting against the whole cohort', () => {
    const one = byGate(evaluateGates(inputs({ cohortSize: 50, deployment: { succeeded: 10, failed: 1, failures: [] } })));
    expect(one['deployment']).toMatchObject({ value: 2, threshold: 10, verdict: 'pass' });
    const many = byGate(evaluateGates(inputs({ cohortSize: 5, deployment: { succeeded: 0, failed: 1, failures: [{ deviceId: 'box-0', phase: 'rejected' }] } })));
    expect(many['deployment']).toMatchObject({ value: 20, verdict: 'fail' });
    const count = byGate(evaluateGates(inputs({ gates: { ...gates, deployment: { maxFailurePercent: 100, maxFailures: 0 } }, deployment: { succeeded: 4, failed: 1, failures: [] } })));
    expect(count['deployment']?.verdict).toBe('fail');
  });

  it('fail a five times slower candidate against the same devices before', () => {
    const g = byGate(evaluateGates(inputs({ evidence: { ...inputs().evidence, canary: stats(5, 100, mix, 100) } })));
    expect(g['latency-p95-ratio']?.verdict).toBe('fail');
    expect(g['latency-p95-ratio']?.value).toBeGreaterThan(4);
  });

  it('pass a sub-millisecond model whose p95 ratio is jitter, under the absolute floor', () => {
    // 0.2 ms before, 0.6 ms now: a ratio of about 3, an increase far under the default 2 ms.
    const fast = inputs({ baseline: stats(5, 100, mix, 0.2), evidence: { ...inputs().evidence, canary: stats(5, 100, mix, 0.6) } });
    const g = byGate(evaluateGates(fast))['latency-p95-ratio'];
    expect(g?.value).toBeGreaterThan(1.5);
    expect(g?.verdict).toBe('pass');
    expect(g?.detail).toMatchObject({ minIncreaseMs: 2 });
    expect(g?.detail?.['increaseMs']).toBeLessThan(2);
    // The same numbers with the floor switched off fail on the ratio alone.
    const noFloor = { ...fast, gates: { ...gates, latency: { ...gates.latency!, minIncreaseMs: 0 } } };
    expect(byGate(evaluateGates(noFloor))['latency-p95-ratio']?.verdict).toBe('fail');
  });

  it('fail garbage predictions by divergence from the control cohort', () => {
    const g = byGate(evaluateGates(inputs({ evidence: { ...inputs().evidence, canary: stats(5, 100, { tree: 1, empty: 1 }, 20) } })));
    expect(g['prediction-js']?.verdict).toBe('fail');
    expect(g['prediction-chi-square']?.verdict).toBe('fail');
    expect(decide(evaluateGates(inputs({ evidence: { ...inputs().evidence, canary: stats(5, 100, { tree: 1 }, 20) } })), false, false).verdict).toBe('fail');
  });

  it('fail error rates and skipped frames over their thresholds', () => {
    const canary = stats(5, 100, mix, 20, { inferenceErrors: 50, framesDropped: 150 });
    const g = byGate(evaluateGates(inputs({ evidence: { ...inputs().evidence, canary } })));
    expect(g['error-rate']).toMatchObject({ verdict: 'fail', value: 0.0909 });
    expect(g['skipped-frames']).toMatchObject({ verdict: 'fail', value: 0.3 });
  });

  it('wait, never pass, on too little data; the deadline turns waiting into failing', () => {
    const few = inputs({ evidence: { ...inputs().evidence, canary: stats(1, 20, mix, 20) } });
    const g = byGate(evaluateGates(few));
    expect(g['min-devices']).toMatchObject({ value: 1, threshold: 3, verdict: 'wait' });
    expect(g['min-frames']).toMatchObject({ value: 20, verdict: 'wait' });
    expect(g['error-rate']?.verdict).toBe('wait');
    expect(decide(evaluateGates(few), true, false)).toEqual({ verdict: 'wait' });
    expect(decide(evaluateGates(few), true, true)).toMatchObject({ verdict: 'fail', reason: expect.stringMatching(/insufficient data.*min-devices/) });
    // Even garbage is not judged on 20 frames.
    const garbage = inputs({ evidence: { ...inputs().evidence, canary: stats(5, 4, { tree: 1 }, 20) } });
    expect(byGate(evaluateGates(garbage))['prediction-js']?.verdict).toBe('wait');
  });

  it('skip comparisons with nothing to compare against', () => {
    const g = byGate(evaluateGates(inputs({ baseline: emptyCohortStats(), evidence: { ...inputs().evidence, control: emptyCohortStats() } })));
    expect(g['latency-p95-ratio']?.verdict).toBe('skip');
    expect(g['prediction-js']?.verdict).toBe('skip');
    expect(decide(evaluateGates(inputs({ baseline: emptyCohortStats() })), true, false)).toEqual({ verdict: 'pass' });
  });

  it('judge a challenger in shadow by its agreement with the champion on the same frames', () => {
    const shadow = emptyShadowStats();
    for (let d = 0; d < 5; d++) shadow.devices.add(`box-${d}`);
    shadow.framesCompared = 400;
    shadow.agreed = 80;
    shadow.championLabels = { cat: 240, dog: 120, empty: 40 };
    shadow.challengerLabels = { tree: 400 };
    observe(shadow.championMs, 20, 400);
    observe(shadow.challengerMs, 21, 400);
    const g = byGate(evaluateGates(inputs({ phase: 'shadow', evidence: { ...inputs().evidence, shadow } })));
    expect(g['shadow-agreement']).toMatchObject({ value: 0.2, threshold: 0.9, verdict: 'fail' });
    expect(g['prediction-js']?.verdict).toBe('fail');
    expect(g['latency-p95-ratio']?.verdict).toBe('pass');
    expect(g['skipped-frames']).toBeUndefined();
  });

  it('need a share of the cohort, capped at its size', () => {
    expect(requiredDevices(gates, 1)).toBe(1);
    expect(requiredDevices(gates, 5)).toBe(3);
    expect(requiredDevices(gates, 50)).toBe(25);
    expect(requiredDevices({ ...gates, minDevices: 10 }, 4)).toBe(4);
  });
});
