import { describe, expect, it } from 'vitest';
import { chiSquareHomogeneity, chiSquareSurvival, jensenShannonDivergence, latencyRegressed, regularizedGammaQ } from './gate-math.js';

describe('Jensen-Shannon divergence (bits)', () => {
  it('is 0 for the same mix, whatever the sample sizes', () => {
    expect(jensenShannonDivergence({ cat: 6, dog: 3, empty: 1 }, { cat: 60, dog: 30, empty: 10 })).toBeCloseTo(0, 12);
  });

  it('is 1 for disjoint labels', () => {
    expect(jensenShannonDivergence({ cat: 10 }, { dog: 4 })).toBeCloseTo(1, 12);
  });

  it('matches a hand computation', () => {
    // P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4):
    // KL(P||M) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075187; KL(Q||M) = log2(4/3) = 0.4150375; JS = their mean.
    expect(jensenShannonDivergence({ a: 5, b: 5 }, { a: 7 })).toBeCloseTo(0.3112781, 6);
  });

  it('is symmetric and NaN with an empty side', () => {
    const p = { cat: 70, dog: 20, empty: 10 };
    const q = { cat: 40, dog: 40, empty: 20 };
    expect(jensenShannonDivergence(p, q)).toBeCloseTo(jensenShannonDivergence(q, p), 12);
    expect(jensenShannonDivergence(p, {})).toBeNaN();
  });
});

describe('chi-square test of homogeneity', () => {
  it('matches a hand-computed 2 x 2 table', () => {
    // [[10, 20], [20, 10]]: every expected count is 15, X^2 = 4 x 25/15 = 6.667, df 1, p = erfc(sqrt(X^2/2)) = 0.009823.
    const r = chiSquareHomogeneity({ cat: 10, dog: 20 }, { cat: 20, dog: 10 });
    expect(r.statistic).toBeCloseTo(20 / 3, 10);
    expect(r.degreesOfFreedom).toBe(1);
    expect(r.pValue).toBeCloseTo(0.0098232, 6);
  });

  it('matches a hand-computed 2 x 3 table (df 2: p = exp(-X^2 / 2))', () => {
    // Rows 30 and 60, columns 30, 30, 30: expected (10, 10, 10) and (20, 20, 20).
    // X^2 = (20-10)^2/10 + (5-10)^2/10 + (5-10)^2/10 + (10-20)^2/20 + (25-20)^2/20 + (25-20)^2/20 = 10 + 2.5 + 2.5 + 5 + 1.25 + 1.25 = 22.5.
    const r = chiSquareHomogeneity({ cat: 20, dog: 5, empty: 5 }, { cat: 10, dog: 25, empty: 25 });
    expect(r.statistic).toBeCloseTo(22.5, 10);
    expect(r.degreesOfFreedom).toBe(2);
    expect(r.pValue).toBeCloseTo(Math.exp(-22.5 / 2), 12);
  });

  it('finds nothing to test in one label or an empty sample', () => {
    expect(chiSquareHomogeneity({ cat: 5 }, { cat: 9 }).pValue).toBe(1);
    expect(chiSquareHomogeneity({}, { cat: 9, dog: 1 }).pValue).toBe(1);
  });

  it('gives chi-square tail probabilities as tables list them', () => {
    // Critical values at p = 0.05: 3.841 (df 1), 5.991 (df 2), 11.070 (df 5); at p = 0.001 with df 10: 29.588.
    expect(chiSquareSurvival(3.841459, 1)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(5.991465, 2)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(11.070498, 5)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(29.588298, 10)).toBeCloseTo(0.001, 7);
    expect(regularizedGammaQ(1, 2)).toBeCloseTo(Math.exp(-2), 12);
  });
});

describe('latency regression (p95 ratio with an absolute floor)', () => {
  it('ignores a sub-millisecond model whose ratio is large but whose increase is jitter', () => {
    // 0.2 -> 0.6 ms: three times slower, 0.4 ms more: under the 2 ms floor.
    expect(latencyRegressed(0.6, 0.2, 1.5, 2)).toBe(false);
    // With no floor the ratio alone fails it.
    expect(latencyRegressed(0.6, 0.2, 1.5, 0)).toBe(true);
  });

  it('fails only when both the ratio and the increase are over their limits', () => {
    expect(latencyRegressed(100, 20, 1.5, 2)).toBe(true); // x5, +80 ms
    expect(latencyRegressed(25, 20, 1.5, 2)).toBe(false); // +5 ms but x1.25
    expect(latencyRegressed(3.5, 1, 1.5, 2)).toBe(true); // x3.5, +2.5 ms
    expect(latencyRegressed(3, 1, 1.5, 2)).toBe(false); // +2 ms is not over the floor
    expect(latencyRegressed(30, 20, 1.5, 2)).toBe(false); // exactly the ratio is not over it
  });

  it('fails against a zero reference once the increase is over the floor', () => {
    expect(latencyRegressed(1, 0, 1.5, 2)).toBe(false);
    expect(latencyRegressed(5, 0, 1.5, 2)).toBe(true);
  });
});
