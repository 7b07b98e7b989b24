import { histogramCount, SHADOW_CONFUSION_MAX_PAIRS, shadowWindowSchema } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { ShadowComparison } from './shadow-comparison.js';
import { WindowAggregator } from './window-aggregator.js';

const challenger = { name: 'colours', version: '2', sha256: 'b'.repeat(64) };

describe("a window's comparison of champion and challenger", () => {
  it('counts agreement, label pairs (most frequent first), both run times, skips and errors', () => {
    const c = new ShadowComparison(challenger, 0.25);
    for (let i = 0; i < 5; i++) c.compared('gate', 'cat', 'cat', 10, 14);
    for (let i = 0; i < 2; i++) c.compared('yard', 'cat', 'dog', 11, 15);
    c.compared('yard', 'dog', 'dog', 9, 13);
    c.skipped();
    c.failed();
    const s = shadowWindowSchema.parse(c.section());
    expect(s).toMatchObject({ model: challenger, sampleRate: 0.25, framesCompared: 8, agreed: 6, skippedBusy: 1, errors: 1, confusionOverflow: 0 });
    expect(s.confusion).toEqual([
      { champion: 'cat', challenger: 'cat', count: 5 },
      { champion: 'cat', challenger: 'dog', count: 2 },
      { champion: 'dog', challenger: 'dog', count: 1 },
    ]);
    expect(s.cameras).toEqual([
      { cameraId: 'gate', framesCompared: 5, agreed: 5 },
      { cameraId: 'yard', framesCompared: 3, agreed: 1 },
    ]);
    expect(histogramCount(s.championInferenceMs)).toBe(8);
    expect(s.challengerInferenceMs.sum).toBe(5 * 14 + 2 * 15 + 13);
  });

  it('stays within the contract with many labels: the rarest pairs go to the overflow', () => {
    const c = new ShadowComparison(challenger, 1);
    for (let i = 0; i < 300; i++) for (let k = 0; k <= (i < 10 ? 1 : 0); k++) c.compared('gate', `l${i}`, `m${i}`, 1, 1);
    const s = shadowWindowSchema.parse(c.section());
    expect(s.confusion).toHaveLength(SHADOW_CONFUSION_MAX_PAIRS);
    expect(s.confusion.slice(0, 10).every((p) => p.count === 2)).toBe(true);
    expect(s.confusionOverflow).toBe(310 - s.confusion.reduce((n, p) => n + p.count, 0));
  });

  it('is in the window only while a challenger runs, and a new challenger closes the window', () => {
    const agg = new WindowAggregator(['gate'], 0);
    agg.switchModel({ name: 'colours', version: '1', sha256: 'a'.repeat(64) }, 0);
    agg.shadowCompared('gate', 'cat', 'cat', 1, 1);
    expect(agg.close(10)?.shadow).toBeUndefined();
    expect(agg.switchShadow({ model: challenger, sampleRate: 0.5 }, 20)?.shadow).toBeUndefined();
    agg.shadowCompared('gate', 'cat', 'dog', 1, 2);
    const closed = agg.switchShadow(null, 30);
    expect(closed?.shadow).toMatchObject({ framesCompared: 1, agreed: 0, sampleRate: 0.5 });
    expect(agg.close(40)?.shadow).toBeUndefined();
  });
});
