import { describe, expect, it } from 'vitest';
import { binIndex, LATENCY_SPEC, emptyHistogram, HISTOGRAM_SPECS, histogramCount, histogramQuantile, histogramQuantileBin, histogramSchema, mergeHistograms, observe } from './histogram.js';

describe('fixed-bin histograms', () => {
  it('puts values in half-open bins with open-ended first and last bins', () => {
    expect(binIndex('confidence.v1', 0)).toBe(0);
    expect(binIndex('confidence.v1', 0.05)).toBe(1);
    expect(binIndex('confidence.v1', 0.0499)).toBe(0);
    expect(binIndex('confidence.v1', 1)).toBe(19);
    expect(binIndex('latency-ms.v1', 0.2)).toBe(0);
    expect(binIndex('latency-ms.v1', 1e9)).toBe(HISTOGRAM_SPECS['latency-ms.v1'].edges.length);
  });

  it('merges exactly: the merge of two windows equals one window of all values', () => {
    const values = Array.from({ length: 500 }, (_, i) => (i * 37) % 997 / 3.7);
    const a = emptyHistogram('latency-ms.v1');
    const b = emptyHistogram('latency-ms.v1');
    const all = emptyHistogram('latency-ms.v1');
    values.forEach((v, i) => {
      observe(i % 2 ? a : b, v);
      observe(all, v);
    });
    const merged = mergeHistograms(a, b);
    expect(merged.counts).toEqual(all.counts);
    expect(merged.sum).toBeCloseTo(all.sum, 6);
    expect(histogramCount(merged)).toBe(500);
    expect(() => mergeHistograms(a, emptyHistogram('confidence.v1'))).toThrow(/cannot merge/);
  });

  it('estimates quantiles inside the right bin', () => {
    const h = emptyHistogram('latency-ms.v1');
    for (let i = 0; i < 90; i++) observe(h, 4);
    for (let i = 0; i < 10; i++) observe(h, 120);
    const p50 = histogramQuantile(h, 0.5);
    expect(p50).toBeGreaterThanOrEqual(3);
    expect(p50).toBeLessThan(5);
    const p99 = histogramQuantile(h, 0.99);
    expect(p99).toBeGreaterThanOrEqual(100);
    expect(p99).toBeLessThan(150);
    expect(Number.isNaN(histogramQuantile(emptyHistogram('confidence.v1'), 0.5))).toBe(true);
  });

  it('names the bin a quantile falls in, open ends included', () => {
    const h = emptyHistogram('latency-ms.v1');
    for (let i = 0; i < 90; i++) observe(h, 4);
    for (let i = 0; i < 10; i++) observe(h, 120);
    expect(histogramQuantileBin(h, 0.5)).toEqual([3, 5]);
    expect(histogramQuantileBin(h, 0.95)).toEqual([100, 150]);
    observe(h, 0.2);
    expect(histogramQuantileBin(h, 0)).toEqual([Number.NEGATIVE_INFINITY, 1]);
    for (let i = 0; i < 200; i++) observe(h, 20_000);
    expect(histogramQuantileBin(h, 0.99)).toEqual([10_000, Number.POSITIVE_INFINITY]);
    expect(histogramQuantileBin(emptyHistogram('latency-ms.v1'), 0.5).every(Number.isNaN)).toBe(true);
  });

  it('validates the bin count against the spec named on the wire', () => {
    expect(histogramSchema.safeParse(emptyHistogram('confidence.v1')).success).toBe(true);
    const wrong = { spec: 'confidence.v1', counts: [1, 2, 3], sum: 0 };
    const r = histogramSchema.safeParse(wrong);
    expect(r.success).toBe(false);
    expect(histogramSchema.safeParse({ spec: 'made-up.v9', counts: [], sum: 0 }).success).toBe(false);
    expect(() => observe(emptyHistogram('confidence.v1'), Number.NaN)).toThrow(/finite/);
  });

  it('refuses bin counts that are not whole numbers >= 0, naming the field', () => {
    for (const bad of [-1, 0.5, Number.MAX_SAFE_INTEGER + 2, '3', null]) {
      const h = emptyHistogram('confidence.v1') as { counts: unknown[] };
      h.counts[4] = bad;
      const r = histogramSchema.safeParse(h);
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]?.path[0]).toBe('counts');
    }
  });

  it('keeps every spec strictly increasing, and the latency spec agents publish fine where inference times fall', () => {
    for (const spec of Object.values(HISTOGRAM_SPECS)) {
      spec.edges.forEach((e, i) => {
        if (i > 0) expect(e).toBeGreaterThan(spec.edges[i - 1] as number);
      });
    }
    const h = emptyHistogram(LATENCY_SPEC);
    for (let i = 0; i < 95; i++) observe(h, 8);
    for (let i = 0; i < 5; i++) observe(h, 15.5);
    // v1 could only say [15, 20) here.
    expect(histogramQuantileBin(h, 0.96)).toEqual([15, 16]);
    // Windows from agents still on v1 stay valid on the wire.
    expect(histogramSchema.safeParse(emptyHistogram('latency-ms.v1')).success).toBe(true);
  });
});
