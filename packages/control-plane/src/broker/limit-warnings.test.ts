import { describe, expect, it } from 'vitest';
import { LimitWarnings } from './limit-warnings.js';
import { capturedLog } from './test-support/broker-harness.js';

describe('limit warnings', () => {
  it('logs once per client and limit per window, then says how many more there were', () => {
    const { log, lines } = capturedLog();
    const w = new LimitWarnings(log, 1000);
    for (let i = 0; i < 5; i++) w.warn('dev-a', 'payload-size', { i }, 'over', i);
    w.warn('dev-a', 'rate-drop', {}, 'rate', 10);
    w.warn('dev-b', 'payload-size', {}, 'over', 10);
    expect(lines.map((l) => [l.clientId, l.limit, l.i])).toEqual([
      ['dev-a', 'payload-size', 0],
      ['dev-a', 'rate-drop', undefined],
      ['dev-b', 'payload-size', undefined],
    ]);
    // The next window's first line carries the count of the last one.
    w.warn('dev-a', 'payload-size', { i: 9 }, 'over', 1500);
    expect(lines.at(-1)).toMatchObject({ clientId: 'dev-a', i: 9, moreSinceLastWarning: 4 });
    // A window that ends quietly after more refusals gets a closing line from the sweep.
    w.warn('dev-a', 'payload-size', {}, 'over', 1600);
    w.sweep(3000);
    expect(lines.at(-1)).toMatchObject({ clientId: 'dev-a', limit: 'payload-size', moreSinceLastWarning: 1 });
    expect(lines).toHaveLength(5);
  });
});
