import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compareGolden, GOLDEN_PATTERN, goldenFrame, modelGoldenSchema, type ModelGolden } from './golden-input.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function channelMeans(frame: Uint8Array): number[] {
  const sums = [0, 0, 0];
  frame.forEach((v, i) => (sums[i % 3] = (sums[i % 3] ?? 0) + v));
  return sums.map((s) => s / (frame.length / 3));
}

describe('goldenFrame', () => {
  it('is the same bytes for a seed, on every machine: the registry and the devices must agree', () => {
    // Pinned: a change to the pattern must come with a new pattern id, or every registered model's golden output breaks.
    expect(sha256(goldenFrame(1, 8, 8))).toBe('a5b08cac3ab0ce66f021f1a3ac82ca88f1677946fd03fde30a679335b037cea8');
    expect(sha256(goldenFrame(0xdeadbeef, 224, 224))).toBe('dfe132321a3e40efef29acced7b2d2da0394c262c3c19e1d127431c135298060');
    expect(goldenFrame(42, 16, 12)).toEqual(goldenFrame(42, 16, 12));
  });

  it('is rgb24 at the asked size, different from seed to seed, with channels at their own levels', () => {
    const a = goldenFrame(1, 32, 24);
    expect(a).toHaveLength(32 * 24 * 3);
    expect(sha256(goldenFrame(2, 32, 24))).not.toBe(sha256(a));
    const means = channelMeans(goldenFrame(1, 32, 32));
    expect(new Set(means.map((m) => Math.round(m))).size).toBe(3);
    // Around a level in 40..215 with at most ±40: no channel is black or saturated.
    for (const m of means) expect(m).toBeGreaterThan(30);
    for (const m of means) expect(m).toBeLessThan(225);
  });
});

describe('compareGolden', () => {
  const golden: ModelGolden = modelGoldenSchema.parse({ frame: { pattern: GOLDEN_PATTERN, seed: 1 }, probabilities: [0.7, 0.2, 0.1] });

  it('defaults the tolerance to 1e-3', () => {
    expect(golden.tolerance).toBe(1e-3);
  });

  it('accepts differences within the tolerance', () => {
    expect(compareGolden([0.7005, 0.1996, 0.1], golden)).toEqual({ ok: true, maxDiff: expect.closeTo(0.0005, 6) });
  });

  it('refuses a larger difference, naming the max difference and the class', () => {
    const r = compareGolden([0.6, 0.3, 0.1], golden);
    expect(r.ok).toBe(false);
    expect(r.maxDiff).toBeCloseTo(0.1, 6);
    if (!r.ok) expect(r.reason).toMatch(/^golden input: max difference 0\.100 \(class 0: expected 0\.7, got 0\.6\) exceeds the tolerance 0\.001$/);
  });

  it('refuses NaN and a wrong class count', () => {
    expect(compareGolden([0.7, Number.NaN, 0.1], golden)).toMatchObject({ ok: false, maxDiff: Number.POSITIVE_INFINITY });
    expect(compareGolden([0.7, 0.3], golden)).toMatchObject({ ok: false, reason: 'golden input: the model gave 2 probabilities, 3 were expected' });
  });
});
