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

/**
 * A benchmark's own setting from the environment (e.g. how long a soak
 * runs), with its default when unset; anything else outside [min, max] is
 * an error that names the variable.
 */
export function envNumber(name: string, fallback: number, range: { min: number; max: number; integer?: boolean }, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < range.min || value > range.max || (range.integer === true && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${range.integer === true ? 'a whole number' : 'a number'} in [${range.min}, ${range.max}], got '${raw}'`);
  }
  return value;
}
