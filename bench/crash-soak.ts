/**
 * Crash soak: the loop of test/activation-crash.test.ts for
 * PERCH_BENCH_CRASH_ITERATIONS deployments (default 1000, a few hours on
 * two cores). Each one registers a new model version, desires it, kills
 * the agent with SIGKILL at a random instant of the deployment, restarts it
 * and checks what it runs: the old model, the new one, or none (the goal:
 * none never). A model that comes back damaged, unreported or not inferring
 * stops the benchmark with the reason.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ActivationCrashLoop, type Ending, type IterationResult } from '../test/support/activation-crash-loop.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { envNumber } from './lib/options.js';

const ENDINGS: Ending[] = ['old', 'new', 'none'];
/** Table rows in the order a deployment goes through them. */
const PHASE_ORDER = ['not started', 'queued', 'downloading', 'verifying', 'ready', 'activating', 'health-check', 'active', 'rolled-back', 'failed', 'rejected'];

export const crashSoak: Benchmark = {
  name: 'crash-soak',
  async run(_options, log): Promise<BenchReport> {
    const iterations = envNumber('PERCH_BENCH_CRASH_ITERATIONS', 1000, { min: 1, max: 1_000_000, integer: true });
    const seed = envNumber('PERCH_BENCH_CRASH_SEED', 1, { min: 0, max: 0xffffffff, integer: true });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-bench-crash-'));
    const results: IterationResult[] = [];
    const started = performance.now();
    const loop = await ActivationCrashLoop.start(dir, seed);
    try {
      for (let i = 0; i < iterations; i++) {
        results.push(await loop.iteration(i));
        if ((i + 1) % 50 === 0 || i + 1 === iterations) log(`${i + 1}/${iterations}: ${tally(results)}`);
      }
    } finally {
      await loop.stop();
      await rm(dir, { recursive: true, force: true });
    }
    const seconds = (performance.now() - started) / 1000;
    const count = (e: Ending) => results.filter((r) => r.ending === e).length;
    const rank = (p: string) => (PHASE_ORDER.includes(p) ? PHASE_ORDER.indexOf(p) : PHASE_ORDER.length);
    const phases = [...new Set(results.map((r) => r.killedIn))].sort((a, b) => rank(a) - rank(b));
    const byPhase = Object.fromEntries(phases.map((p) => [p, Object.fromEntries(ENDINGS.map((e) => [e, results.filter((r) => r.killedIn === p && r.ending === e).length]))]));
    return {
      title: `Crash soak: ${iterations} deployments, the agent killed with SIGKILL at a random instant of each, then restarted`,
      table: {
        columns: ['killed during (as the control plane saw it)', 'kills', 'ended on old', 'ended on new', 'ended on none'],
        rows: [
          ...phases.map((p) => [p, String(results.filter((r) => r.killedIn === p).length), ...ENDINGS.map((e) => String(byPhase[p]?.[e] ?? 0))]),
          ['all', String(results.length), ...ENDINGS.map((e) => String(count(e)))],
        ],
      },
      notes: [
        `goal: none on no model; ${count('none') === 0 ? 'met' : `MISSED (${count('none')})`}`,
        'each ending is checked: the model the on-disk pointer names hashes to its name, is the one the agent reports, and infers camera frames',
        `the phase is the last the control plane heard before the kill, so it lags the agent a little; ${seconds.toFixed(0)} s in all (${(seconds / iterations).toFixed(1)} s per deployment), seed ${seed}`,
      ],
      figures: { iterations, seed, endedOn: Object.fromEntries(ENDINGS.map((e) => [e, count(e)])), byKillPhase: byPhase, seconds: Math.round(seconds) },
    };
  },
};

function tally(results: IterationResult[]): string {
  return ENDINGS.map((e) => `${e} ${results.filter((r) => r.ending === e).length}`).join(', ');
}
