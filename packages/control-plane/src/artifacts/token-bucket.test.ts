import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe('token bucket', () => {
  it('lends: a take waits for its debt at the rate, whatever its size, in arrival order', () => {
    const b = new TokenBucket(1000, 100, 0);
    expect(b.reserve(100, 0)).toBe(0); // the burst
    expect(b.reserve(500, 0)).toBe(500); // 500 bytes at 1000/s
    expect(b.reserve(10, 0)).toBe(510); // behind the one before it
    // After the debt is paid, only the burst builds up again.
    expect(b.reserve(0, 10_000)).toBe(0);
    expect(b.isFull(10_000)).toBe(true);
    expect(b.reserve(300, 10_000)).toBe(200);
  });

  it('tryTake never lends: it takes what is there or nothing', () => {
    const b = new TokenBucket(10, 20, 0);
    expect(b.tryTake(15, 0)).toBe(true);
    expect(b.tryTake(10, 0)).toBe(false); // 5 left: refused, and nothing taken
    expect(b.tryTake(5, 0)).toBe(true);
    expect(b.tryTake(1, 50)).toBe(false); // 0.5 refilled
    expect(b.tryTake(1, 100)).toBe(true);
    expect(b.reserve(0, 100)).toBe(0); // never in debt
  });

  it('never lets more than burst + rate x time go out', () => {
    const b = new TokenBucket(1_000_000, 50_000, 0);
    let sentAt = 0;
    let bytes = 0;
    for (let i = 0; i < 1000; i++) {
      const now = i * 0.3; // requests arriving faster than the rate
      const wait = b.reserve(4096, now);
      sentAt = Math.max(sentAt, now + wait);
      bytes += 4096;
      expect(bytes).toBeLessThanOrEqual(50_000 + 1_000_000 * (sentAt / 1000) + 1e-6);
    }
  });
});
