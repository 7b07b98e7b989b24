import { describe, expect, it } from 'vitest';
import { FrameSampler } from './frame-sampler.js';

describe('frame sampler', () => {
  it('picks floor(n x rate) of each camera, evenly spread, whatever the other cameras do', () => {
    const s = new FrameSampler(0.1);
    const picked: Record<string, number[]> = { a: [], b: [] };
    for (let i = 0; i < 100; i++) {
      if (s.take('a')) picked.a?.push(i);
      // Camera b delivers three frames for each of a's.
      for (let k = 0; k < 3; k++) if (s.take('b')) picked.b?.push(i * 3 + k);
    }
    expect(picked.a).toEqual([9, 19, 29, 39, 49, 59, 69, 79, 89, 99]);
    expect(picked.b).toHaveLength(30);
  });

  it('gives two cameras taking turns their share each at a rate of one half', () => {
    const s = new FrameSampler(0.5);
    let a = 0;
    let b = 0;
    for (let i = 0; i < 50; i++) {
      if (s.take('a')) a++;
      if (s.take('b')) b++;
    }
    expect([a, b]).toEqual([25, 25]);
  });

  it('takes every frame at a rate of one, and refuses rates outside (0, 1]', () => {
    const s = new FrameSampler(1);
    expect(Array.from({ length: 5 }, () => s.take('a'))).toEqual([true, true, true, true, true]);
    expect(() => new FrameSampler(0)).toThrow(RangeError);
    expect(() => new FrameSampler(1.5)).toThrow(RangeError);
  });
});
