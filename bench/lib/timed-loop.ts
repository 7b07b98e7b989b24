import { performance } from 'node:perf_hooks';

/** Sequential runs of one operation: a run starts when the previous one has finished. */
export class LoopSample {
  runs = 0;
  elapsedMs = 0;
  readonly latenciesMs: number[] = [];

  get perSecond(): number {
    return this.elapsedMs > 0 ? (this.runs * 1000) / this.elapsedMs : 0;
  }
}

/**
 * Runs `op` back to back for about `durationMs`, adding to `into` when given
 * (several rounds of one variant add up to one sample); without it, the runs
 * are a warm-up and nothing is kept.
 */
export async function runFor(durationMs: number, op: () => Promise<unknown>, into?: LoopSample): Promise<void> {
  const start = performance.now();
  const end = start + durationMs;
  let now = start;
  while (now < end) {
    const began = now;
    await op();
    now = performance.now();
    if (into) {
      into.runs++;
      into.latenciesMs.push(now - began);
    }
  }
  if (into) into.elapsedMs += now - start;
}
