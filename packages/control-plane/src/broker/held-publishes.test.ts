import { describe, expect, it } from 'vitest';
import { HeldPublishes } from './held-publishes.js';

describe('held publishes', () => {
  it('releases in the order held, even one due earlier than those before it', async () => {
    const h = new HeldPublishes();
    const out: string[] = [];
    const now = performance.now();
    h.hold(now + 30, () => out.push('a'), now);
    h.hold(now + 10, () => out.push('b'), now);
    h.hold(now + 31, () => out.push('c'), now);
    h.hold(now, () => out.push('d'), now);
    expect(h.size).toBe(4);
    await new Promise<void>((resolve) => {
      const check = () => (h.size === 0 ? resolve() : setTimeout(check, 5));
      check();
    });
    expect(out).toEqual(['a', 'b', 'c', 'd']);
  });

  it('releases everything at once when the client is gone', () => {
    const h = new HeldPublishes();
    const out: number[] = [];
    const now = performance.now();
    for (let i = 0; i < 3; i++) h.hold(now + 60_000, () => out.push(i), now);
    h.releaseAll();
    expect(out).toEqual([0, 1, 2]);
    expect(h.size).toBe(0);
  });
});
