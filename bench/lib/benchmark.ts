import type { BenchOptions } from './options.js';
import type { Table } from './table.js';

/** What one benchmark hands back: a table for people, figures for the JSON file. */
export interface BenchReport {
  title: string;
  table: Table;
  /** Lines printed under the table: ratios, checks, caveats. */
  notes: string[];
  figures: Record<string, unknown>;
}

export interface Benchmark {
  /** Key of this benchmark's figures in results/latest.json. */
  name: string;
  run(options: BenchOptions, log: (line: string) => void): Promise<BenchReport>;
}
