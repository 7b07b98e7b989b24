import { describe, expect, it } from 'vitest';
import { JitteredBackoff } from './jittered-backoff.js';

describe('jittered backoff', () => {
  it('doubles the window up to the maximum, with the delay anywhere inside it', () => {
    const top = new JitteredBackoff(500, 30_000, () => 0.999999);
    const ceilings = Array.from({ length: 9 }, () => top.next());
    expect(ceilings).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    const bottom = new JitteredBackoff(500, 30_000, () => 0);
    expect(bottom.next()).toBe(0);
  });

  it('starts again from the smallest window after reset, and never overflows', () => {
    const b = new JitteredBackoff(500, 30_000, () => 0.999999);
    for (let i = 0; i < 2000; i++) b.next();
    expect(b.next()).toBe(30000);
    b.reset();
    expect(b.next()).toBe(500);
    expect(() => new JitteredBackoff(0, 10)).toThrow(RangeError);
  });
});
