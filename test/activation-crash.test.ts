import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ActivationCrashLoop, type IterationResult } from './support/activation-crash-loop.js';

/**
 * Crash safety of a deployment, across real processes: the agent is killed
 * with SIGKILL at a random instant of downloading, verifying, installing,
 * activating (golden input, pointer, switch) or its health window, 20 times
 * in a row, and every time it must come back on the old or the new model
 * (its file hashing to its name, reported active, inferring camera frames),
 * never on none. bench/crash-soak.ts runs the same loop 1000 times.
 */
const ITERATIONS = 20;
const SEED = Number(process.env.PERCH_CRASH_SEED ?? 20_241);

let dir: string;
let loop: ActivationCrashLoop | null = null;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-crash-'));
  loop = await ActivationCrashLoop.start(dir, SEED);
});

afterAll(async () => {
  await loop?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it(`SIGKILL at random points of ${ITERATIONS} deployments: each restart ends on the old or the new model, never on none`, async () => {
  const results: IterationResult[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const r = await (loop as ActivationCrashLoop).iteration(i);
    results.push(r);
    expect(r.ending, `iteration ${i} (seed ${SEED}): killed ${r.delayMs} ms in, during ${r.killedIn}; settled as ${r.settledAs}`).not.toBe('none');
  }
  expect(results.filter((r) => r.ending === 'none')).toEqual([]);
}, 240_000);
