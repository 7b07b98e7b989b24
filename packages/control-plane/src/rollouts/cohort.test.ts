import { describe, expect, it } from 'vitest';
import { cohortHash, rankDevices, stageCohort, stageSize } from './cohort.js';

const fleet = (n: number) => Array.from({ length: n }, (_, i) => `box-${String(i).padStart(4, '0')}`);

describe('cohort hashing', () => {
  it('is deterministic, in [0, 1), and differs between rollouts', () => {
    expect(cohortHash('ro-a', 'box-1')).toBe(cohortHash('ro-a', 'box-1'));
    expect(cohortHash('ro-a', 'box-1')).not.toBe(cohortHash('ro-b', 'box-1'));
    const hashes = fleet(10_000).map((d) => cohortHash('ro-a', d));
    expect(Math.min(...hashes)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...hashes)).toBeLessThan(1);
    // Uniform enough that a 10 % threshold takes about a tenth (binomial sd of 10,000 x 0.1 is 30).
    const below = hashes.filter((h) => h < 0.1).length;
    expect(below).toBeGreaterThan(850);
    expect(below).toBeLessThan(1150);
  });

  it('sizes stages by percent (rounded up) or count, capped at the target', () => {
    expect(stageSize({ percent: 1, soakSeconds: 0 }, 50)).toBe(1);
    expect(stageSize({ percent: 10, soakSeconds: 0 }, 50)).toBe(5);
    expect(stageSize({ percent: 100, soakSeconds: 0 }, 50)).toBe(50);
    expect(stageSize({ count: 3, soakSeconds: 0 }, 50)).toBe(3);
    expect(stageSize({ count: 300, soakSeconds: 0 }, 50)).toBe(50);
  });

  it("keeps every stage's devices in the next, and gives a device that joins the stage its hash says", () => {
    const stages = [1, 10, 50, 100].map((percent) => ({ percent, soakSeconds: 0 }));
    const ranked = rankDevices('ro-x', fleet(200));
    const cohorts = stages.map((s) => new Set(stageCohort(ranked, s).map((d) => d.deviceId)));
    // At least the stage's share, and every device whose hash is under its fraction.
    const expected = stages.map((s, k) => Math.max([2, 20, 100, 200][k]!, ranked.filter((d) => d.hash < s.percent / 100).length));
    expect(cohorts.map((c) => c.size)).toEqual(expected);
    for (let k = 1; k < cohorts.length; k++) for (const d of cohorts[k - 1]!) expect(cohorts[k]!.has(d)).toBe(true);
    // Every device with a hash under the stage's fraction is in it.
    for (const d of ranked) if (d.hash < 0.5) expect(cohorts[2]!.has(d.deviceId)).toBe(true);

    // Ten devices join the target: those already chosen stay chosen, and the order is the same rollout's order.
    const grown = rankDevices('ro-x', [...fleet(200), ...fleet(210).slice(200)]);
    const after = new Set(stageCohort(grown, stages[2]!).map((d) => d.deviceId));
    for (const d of cohorts[2]!) {
      const h = cohortHash('ro-x', d);
      if (h < 0.5) expect(after.has(d)).toBe(true);
    }
    for (const d of grown) if (d.hash < 0.5) expect(after.has(d.deviceId)).toBe(true);
  });

  it('ranks the same fleet the same way whatever order the ids come in', () => {
    const ids = fleet(100);
    expect(rankDevices('ro-y', [...ids].reverse()).map((d) => d.deviceId)).toEqual(rankDevices('ro-y', ids).map((d) => d.deviceId));
  });
});
