import { compareGolden, goldenFrame, type ModelTarget } from '@perch/shared';
import type { InferenceRunner } from '../inference/inference-runner.js';

export type SmokeResult =
  /** the model gave the registry's answer for the golden frame; runMs is its median run time, the health window's baseline */
  | { outcome: 'passed'; maxDiff: number; runMs: number }
  /** a target registered before golden inputs: the frame still ran (a baseline, and a model that errors on it is refused) */
  | { outcome: 'no-golden'; runMs: number }
  | { outcome: 'failed'; reason: string };

/** Runs after the first: the first alone is compared; the median run time is the baseline. */
const TIMED_RUNS = 3;

/**
 * Runs a target's golden frame through a freshly loaded worker, before any
 * camera frame reaches it, and compares its probabilities with those the
 * registry signed. The worker preprocesses and post-processes the frame
 * exactly as it will each camera frame.
 */
export async function smokeTest(runner: InferenceRunner, target: ModelTarget): Promise<SmokeResult> {
  const { width, height } = target.custom.metadata.input;
  const golden = target.custom.golden;
  const frame = goldenFrame(golden?.frame.seed ?? 0, width, height);
  const times: number[] = [];
  let first: Float32Array | null = null;
  try {
    for (let i = 0; i < TIMED_RUNS; i++) {
      const r = await runner.run(frame);
      first ??= Float32Array.from(r.probabilities);
      times.push(r.inferenceMs);
    }
  } catch (err) {
    return { outcome: 'failed', reason: `golden input: the model failed to run it: ${(err as Error).message}` };
  }
  const runMs = median(times);
  if (!golden || !first) return { outcome: 'no-golden', runMs };
  const cmp = compareGolden(first, golden);
  return cmp.ok ? { outcome: 'passed', maxDiff: cmp.maxDiff, runMs } : { outcome: 'failed', reason: cmp.reason };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
