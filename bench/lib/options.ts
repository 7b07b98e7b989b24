import os from 'node:os';
import path from 'node:path';

export interface BenchOptions {
  /** Measured seconds per variant of each benchmark, warm-up not included. */
  seconds: number;
  /** Cache for built artifacts (the demo model), reused across runs. */
  workDir: string;
}

export function benchOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const raw = env['PERCH_BENCH_SECONDS'];
  const seconds = raw === undefined || raw === '' ? 5 : Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
    throw new Error(`PERCH_BENCH_SECONDS must be a number of seconds in (0, 600], got '${raw}'`);
  }
  return { seconds, workDir: path.join(os.tmpdir(), 'perch-bench') };
}
