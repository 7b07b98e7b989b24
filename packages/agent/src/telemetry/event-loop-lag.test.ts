import { histogramCount, histogramQuantile } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { EventLoopLag } from './event-loop-lag.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('event-loop lag', () => {
  it('sees a blocked main thread and windows its samples', async () => {
    const lag = new EventLoopLag(10);
    lag.start();
    try {
      await sleep(100);
      const calm = lag.takeWindow();
      expect(histogramCount(calm)).toBeGreaterThan(3);
      // Block the thread for 120 ms: the next sample is at least that late.
      const until = Date.now() + 120;
      while (Date.now() < until) {
        /* busy on purpose */
      }
      await sleep(40);
      const blocked = lag.takeWindow();
      expect(histogramQuantile(blocked, 1)).toBeGreaterThanOrEqual(100);
      expect(blocked.sum).toBeGreaterThanOrEqual(100);
    } finally {
      lag.stop();
    }
  });
});
