/**
 * `npm run bench`: runs every benchmark in order, prints a table per
 * benchmark and writes all figures to bench/results/latest.json. Speed is
 * reported as ratios to a baseline measured in the same run, since the
 * machines are shared and absolute figures drift between runs.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crashSoak } from './crash-soak.js';
import { delivery } from './delivery.js';
import { fleetScale } from './fleet-scale.js';
import { fourCameras } from './four-cameras.js';
import { fuzzPayloads } from './fuzz-payloads.js';
import { ingestWrite } from './ingest-write.js';
import { inferenceThroughput } from './inference-throughput.js';
import { largeModel } from './large-model.js';
import type { Benchmark } from './lib/benchmark.js';
import { machineInfo } from './lib/machine.js';
import { benchOptionsFromEnv } from './lib/options.js';
import { formatTable } from './lib/table.js';
import { memory } from './memory.js';
import { pipelineSaturation } from './pipeline-saturation.js';

/** Add later benchmarks here; each gets its own table and key in the JSON. */
const BENCHMARKS: Benchmark[] = [inferenceThroughput, pipelineSaturation, fourCameras, memory, delivery, ingestWrite];
/** Run only when named in PERCH_BENCH_ONLY: the crash soak's 1000 kills take most of an hour. */
const ON_REQUEST: Benchmark[] = [crashSoak, largeModel, fleetScale, fuzzPayloads];

/** PERCH_BENCH_ONLY=name[,name...] runs only those benchmarks. */
function selected(env: NodeJS.ProcessEnv = process.env): Benchmark[] {
  const raw = env['PERCH_BENCH_ONLY'];
  if (raw === undefined || raw.trim() === '') return BENCHMARKS;
  const names = raw.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const all = [...BENCHMARKS, ...ON_REQUEST];
  const unknown = names.filter((n) => !all.some((b) => b.name === n));
  if (unknown.length > 0) throw new Error(`PERCH_BENCH_ONLY names no benchmark '${unknown.join("', '")}'; there are: ${all.map((b) => b.name).join(', ')}`);
  return all.filter((b) => names.includes(b.name));
}

const resultsFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json');

async function main(): Promise<void> {
  const options = benchOptionsFromEnv();
  const benchmarks = selected();
  const machine = machineInfo();
  const date = new Date().toISOString();
  console.log(`perch bench ${date}`);
  console.log(`${machine.cpuModel}, ${machine.cores} cores, ${machine.platform}/${machine.arch}, node ${machine.node}, load ${machine.loadAverage1m}`);
  console.log(`PERCH_BENCH_SECONDS=${options.seconds}\n`);

  const results: Record<string, unknown> = {};
  for (const bench of benchmarks) {
    const log = (line: string): void => console.log(`[${bench.name}] ${line}`);
    const report = await bench.run(options, log);
    console.log(`\n${report.title}\n\n${formatTable(report.table)}\n`);
    for (const note of report.notes) console.log(`  ${note}`);
    // The machine is shared: the load at the end of each benchmark says how noisy its figures are.
    const loadAverage1m = machineInfo().loadAverage1m;
    console.log(`  load average (1 min) at the end: ${loadAverage1m}\n`);
    results[bench.name] = { ...report.figures, loadAverage1mAtEnd: loadAverage1m };
  }

  await mkdir(path.dirname(resultsFile), { recursive: true });
  await writeFile(resultsFile, `${JSON.stringify({ date, machine, options: { seconds: options.seconds, only: benchmarks.map((b) => b.name) }, benchmarks: results }, null, 2)}\n`);
  console.log(`results written to ${path.relative(process.cwd(), resultsFile)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
