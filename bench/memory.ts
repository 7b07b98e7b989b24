/**
 * Resident memory of a real agent process, as the kernel counts it (worker
 * threads, onnxruntime's native arenas and all): idle with no model, after a
 * model is activated, over a soak with four cameras running, and across
 * model swaps. A box that is never visited must not grow until the OOM
 * killer restarts it; re-creating onnxruntime sessions leaks
 * (onnxruntime#25325), which is why every swap gets a fresh worker.
 */
import { readFile } from 'node:fs/promises';
import type { AgentProcess } from '../test/support/agent-process.js';
import { waitUntil } from '../test/support/wait-until.js';
import { demoModel, mobileNetV2 } from './lib/bench-models.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { cameraClips } from './lib/camera-clip.js';
import { envNumber } from './lib/options.js';
import { PerchSite, type RegisteredModel } from './lib/perch-site.js';
import { childPids, resident, rssBytes } from './lib/proc-stats.js';
import { rebadged } from './lib/rebadged-model.js';
import { linearSlope, median, round } from './lib/stats.js';

const CAMERAS = 4;
const CAMERA_FPS = 5;
const MiB = 2 ** 20;
/** Several readings a second apart, their median: one reading can land on either side of a garbage collection. */
const SETTLE_READINGS = 5;
const SOAK_SAMPLE_MS = 5000;
/** The start of a soak is the heap settling after activation, not growth: the first third, at most 10 minutes, is not judged. */
const SOAK_WARMUP_SHARE = 1 / 3;
const SOAK_WARMUP_MAX_S = 600;
/** Shorter soaks are reported but not judged: a few minutes of GC noise look like a trend either way. */
const SOAK_MIN_MINUTES_TO_JUDGE = 10;
/**
 * Swaps before the baseline reading, as the soak has its warm-up: the first
 * replaces the soak's bigger model, whose memory is not a swap's, and RSS
 * climbs 15-25 MiB over the first 20-30 swaps before it levels off (150
 * swaps with cameras: +16 MiB by swap 33, then +0.09 MiB a swap), which
 * after only 2 read as 0.6 MiB a swap over 50.
 */
const WARMUP_SWAPS = 20;
/** Pause after the last swap before readings are taken, so the old worker's memory has been handed back. */
const SETTLE_AFTER_SWAP_MS = 3000;
/**
 * The bounds we hold the agent to. A soak must settle: after its warm-up
 * the process may grow by at most 16 MiB in all, however long the soak (~6 %
 * of the agent with a MobileNetV2 and four cameras; any steady leak crosses
 * it in a long enough soak, while a heap that steps up once and stays does
 * not). The least-squares trend is reported beside it but not judged: one
 * such step in a 30-minute soak reads as a trend of several MiB per 10
 * minutes. Swaps: at most 0.5 MiB per swap, so a box swapped weekly gains
 * < 30 MiB a year.
 */
const SOAK_BOUND_SETTLED_MIB = 16;
const SWAP_BOUND_MIB = 0.5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes: number, digits = 1) => (bytes / MiB).toFixed(digits);

async function settledRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < SETTLE_READINGS; i++) {
    if (i > 0) await sleep(1000);
    readings.push(rssBytes(pid));
  }
  return median(readings);
}

interface SoakSample {
  seconds: number;
  rss: number;
  anon: number;
}

interface Soak {
  minutes: number;
  samples: SoakSample[];
  /** readings before this are the heap settling after activation */
  warmupSeconds: number;
  /** least-squares growth per 10 minutes after the warm-up, and over the last half of that */
  fitPer10Min: number;
  lastHalfFitPer10Min: number;
  /** median of the last minute minus median of the first minute after the warm-up: total and anonymous memory */
  settledGrowth: number;
  settledAnonGrowth: number;
}

const per10Min = (samples: SoakSample[]): number => linearSlope(samples.map((s) => s.seconds), samples.map((s) => s.rss)) * 600;

function medianOf(samples: SoakSample[], pick: (s: SoakSample) => number): number {
  return median(samples.map(pick));
}

async function soak(agent: AgentProcess, pid: number, minutes: number): Promise<Soak> {
  const start = performance.now();
  const samples: SoakSample[] = [];
  for (;;) {
    const seconds = (performance.now() - start) / 1000;
    samples.push({ seconds, ...resident(pid) });
    if (!agent.running) throw new Error(`the agent exited during the soak\n${agent.tail()}`);
    if (seconds >= minutes * 60) break;
    await sleep(Math.min(SOAK_SAMPLE_MS, minutes * 60_000 - seconds * 1000));
  }
  const end = minutes * 60;
  const warmupSeconds = Math.min(SOAK_WARMUP_MAX_S, end * SOAK_WARMUP_SHARE);
  const settled = samples.filter((s) => s.seconds >= warmupSeconds);
  const lastHalf = settled.filter((s) => s.seconds >= (warmupSeconds + end) / 2);
  const early = settled.filter((s) => s.seconds < warmupSeconds + 60);
  const late = settled.filter((s) => s.seconds >= end - 60);
  return {
    minutes,
    samples,
    warmupSeconds,
    fitPer10Min: per10Min(settled),
    lastHalfFitPer10Min: per10Min(lastHalf),
    settledGrowth: medianOf(late, (s) => s.rss) - medianOf(early, (s) => s.rss),
    settledAnonGrowth: medianOf(late, (s) => s.anon) - medianOf(early, (s) => s.anon),
  };
}

interface Swaps {
  requested: number;
  completed: number;
  before: number;
  after: number;
  /** RSS after each completed swap */
  samples: number[];
  seconds: number;
  /** why the agent process ended, if it did */
  aborted?: string;
}

/**
 * Alternates the desired model between two models, waiting for `active`
 * each time. If the agent process dies the swaps stop there and the reason
 * (its last stderr lines) is reported: that is a finding, not a bench error.
 */
async function swapModels(site: PerchSite, agent: AgentProcess, pid: number, versions: [RegisteredModel, RegisteredModel], swaps: number): Promise<Swaps> {
  const result: Swaps = { requested: swaps, completed: 0, before: Number.NaN, after: Number.NaN, samples: [], seconds: 0 };
  const lastStderr = (): string => agent.stderr.join('').split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(-2).join(' ') || 'no stderr';
  let attempt = 0;
  try {
    for (; attempt < WARMUP_SWAPS + swaps; attempt++) {
      if (attempt === WARMUP_SWAPS) {
        await sleep(SETTLE_AFTER_SWAP_MS);
        result.before = await settledRss(pid);
      }
      const started = performance.now();
      await site.waitActive(agent, await site.setDesired(agent.deviceId, attempt % 2 === 0 ? versions[0] : versions[1]));
      if (attempt < WARMUP_SWAPS) continue;
      result.seconds += (performance.now() - started) / 1000;
      result.completed++;
      result.samples.push(rssBytes(pid));
    }
    await sleep(SETTLE_AFTER_SWAP_MS);
    result.after = await settledRss(pid);
  } catch (err) {
    if (agent.running) throw err;
    const which = attempt < WARMUP_SWAPS ? `warm-up swap ${attempt + 1}` : `swap ${attempt - WARMUP_SWAPS + 1}`;
    result.aborted = `the agent process died at ${which}: ${lastStderr()}`;
  }
  return result;
}

function swapGrowth(s: Swaps): { perSwap: number; fit: number; ok: boolean } {
  const perSwap = (s.after - s.before) / s.completed;
  const fit = linearSlope(s.samples.map((_, i) => i + 1), s.samples);
  return { perSwap, fit, ok: !s.aborted && perSwap / MiB <= SWAP_BOUND_MIB && fit / MiB <= SWAP_BOUND_MIB };
}

function swapRow(label: string, s: Swaps): string[] {
  if (s.aborted) return [label, Number.isNaN(s.before) ? '-' : `${mib(s.before)} -> -`, `${s.completed} of ${s.requested} swaps, then ${s.aborted}`];
  const g = swapGrowth(s);
  return [
    label,
    `${mib(s.before)} -> ${mib(s.after)}`,
    `max ${mib(Math.max(...s.samples))}; ${(g.perSwap / MiB).toFixed(3)} MiB per swap, fit ${(g.fit / MiB).toFixed(3)} (bound ${SWAP_BOUND_MIB}: ${g.ok ? 'within' : 'EXCEEDED'}); ${(s.seconds / s.completed).toFixed(2)} s per swap`,
  ];
}

function swapFigures(s: Swaps): Record<string, unknown> {
  const g = swapGrowth(s);
  return {
    requested: s.requested,
    completed: s.completed,
    aborted: s.aborted ?? null,
    rssBeforeMiB: round(s.before / MiB, 1),
    rssAfterMiB: round(s.after / MiB, 1),
    growthMiBPerSwap: round(g.perSwap / MiB, 4),
    fitMiBPerSwap: round(g.fit / MiB, 4),
    withinBound: g.ok,
    secondsPerSwap: round(s.seconds / s.completed, 2),
    samplesMiB: s.samples.map((r) => round(r / MiB, 1)),
  };
}

export const memory: Benchmark = {
  name: 'memory',
  async run(options, log): Promise<BenchReport> {
    const soakMinutes = envNumber('PERCH_BENCH_SOAK_MINUTES', 2, { min: 0.5, max: 24 * 60 });
    const swaps = envNumber('PERCH_BENCH_SWAPS', 50, { min: 2, max: 10_000, integer: true });
    const clip = await cameraClips(options.workDir, CAMERAS);
    const mobilenet = await mobileNetV2();
    const demo = await demoModel(options.workDir);
    const demoBytes = await readFile(demo.modelPath);

    const site = await PerchSite.start();
    try {
      const big = await site.register(mobilenet, mobilenet.version, await readFile(mobilenet.modelPath));
      // Two copies of one network, alternated so that every swap is a real download, verification, worker start and switch.
      // Under two names: going back to the older version of one name would be refused as a downgrade.
      const versions: [RegisteredModel, RegisteredModel] = [
        await site.register(demo, '1.0.0', demoBytes),
        await site.register({ ...demo, name: `${demo.name}-b` }, '1.0.0', rebadged(demoBytes, 'perch-bench-swap')),
      ];

      const { agent, pid } = await site.startAgent({
        deviceId: 'bench-memory-cameras',
        cameras: clip.clips.map((c, i) => ({ id: `cam${i + 1}`, fps: CAMERA_FPS, source: { kind: 'file', path: c.path } })),
        telemetry: { windowSeconds: 5 },
        log: { level: 'info' },
      });
      await site.waitOnline(agent);
      await sleep(2000);
      const idle = await settledRss(pid);
      log(`idle, no model: ${mib(idle)} MiB`);

      await site.waitActive(agent, await site.setDesired(agent.deviceId, big));
      // Cameras start once the model is active: wait for a telemetry window in which all four had frames inferred.
      await waitUntil(
        () => site.windows(agent.deviceId).some((w) => w.model?.sha256 === big.sha256 && w.cameras.filter((c) => c.framesInferred > 0).length === CAMERAS),
        'four cameras inferring',
        90_000,
      );
      const active = await settledRss(pid);
      const ffmpegRss = childPids(pid).reduce((s, p) => s + (rssBytes(p) || 0), 0);
      log(`${mobilenet.name} active with ${CAMERAS} cameras: ${mib(active)} MiB; soaking for ${soakMinutes} min`);

      const soaked = await soak(agent, pid, soakMinutes);
      const rss = soaked.samples.map((x) => x.rss);
      const first = rss[0] ?? Number.NaN;
      const last = rss.at(-1) ?? Number.NaN;
      const max = Math.max(...rss);
      const warmupMin = (soaked.warmupSeconds / 60).toFixed(1);
      log(`soak: ${mib(first)} -> ${mib(last)} MiB (max ${mib(max)}); after ${warmupMin} min: +${mib(soaked.settledGrowth)} MiB, trend ${mib(soaked.fitPer10Min, 2)} MiB per 10 min, last half ${mib(soaked.lastHalfFitPer10Min, 2)}`);

      // With the cameras running, as on a box: the small demo model, so that 50 swaps take under a minute.
      const live = await swapModels(site, agent, pid, versions, swaps);
      log(live.aborted ? `swaps with cameras: ${live.aborted}` : `${swaps} swaps with cameras running: ${mib(live.before)} -> ${mib(live.after)} MiB`);
      await agent.stop();

      // The same swaps on an agent with no cameras: no frame is ever in flight, so what remains is the swap's own memory.
      const quiet = await site.startAgent({ deviceId: 'bench-memory-no-cameras', log: { level: 'info' } });
      await site.waitOnline(quiet.agent);
      await sleep(2000);
      const idleNoCameras = await settledRss(quiet.pid);
      const bare = await swapModels(site, quiet.agent, quiet.pid, versions, swaps);
      log(bare.aborted ? `swaps without cameras: ${bare.aborted}` : `${swaps} swaps without cameras: ${mib(bare.before)} -> ${mib(bare.after)} MiB`);
      await quiet.agent.stop();

      const soakJudged = soakMinutes >= SOAK_MIN_MINUTES_TO_JUDGE;
      const soakOk = soaked.settledGrowth / MiB <= SOAK_BOUND_SETTLED_MIB;
      const soakVerdict = !soakJudged ? `not judged under ${SOAK_MIN_MINUTES_TO_JUDGE} min` : soakOk ? 'within' : 'EXCEEDED';
      return {
        title: `Agent process memory (VmRSS): ${CAMERAS} x ${clip.width}x${clip.height}p${clip.fps} file cameras at ${CAMERA_FPS} fps, ${mobilenet.name} soak ${soakMinutes} min, ${swaps} swaps between two copies of ${demo.name}`,
        table: {
          columns: ['phase', 'RSS MiB', 'note'],
          rows: [
            ['idle, no model (cameras configured, stopped)', mib(idle), 'connected to the control plane, nothing to run'],
            [`${mobilenet.name} active, ${CAMERAS} cameras`, mib(active), `+${mib(active - idle)} MiB over idle; the ffmpeg processes hold ${mib(ffmpegRss, 0)} MiB more, outside the agent`],
            [
              `soak start -> end (${soakMinutes} min)`,
              `${mib(first)} -> ${mib(last)}`,
              `max ${mib(max)}; after ${warmupMin} min +${mib(soaked.settledGrowth)} MiB (anonymous +${mib(soaked.settledAnonGrowth)}; bound ${SOAK_BOUND_SETTLED_MIB}: ${soakVerdict}); trend ${mib(soaked.fitPer10Min, 2)} MiB / 10 min, last half ${mib(soaked.lastHalfFitPer10Min, 2)}`,
            ],
            swapRow(`${swaps} swaps, cameras running`, live),
            ['idle, no cameras configured', mib(idleNoCameras), 'a second agent process, for swaps with no frame in flight'],
            swapRow(`${swaps} swaps, no cameras`, bare),
          ],
        },
        notes: [
          `bounds: after the soak's first ${warmupMin} min, RSS grows <= ${SOAK_BOUND_SETTLED_MIB} MiB in all (median of its last minute - median of the first minute after the warm-up; a reading every ${SOAK_SAMPLE_MS / 1000} s; the least-squares trend is shown, not judged: one step of a few MiB reads as a trend); swaps <= ${SWAP_BOUND_MIB} MiB per swap (after - before, and the fit over the per-swap readings), after ${WARMUP_SWAPS} warm-up swaps`,
          `each swap downloads the other version over MQTT, verifies it and loads it in a fresh worker before the old one stops`,
          ...(soakJudged ? [] : [`a ${soakMinutes}-minute soak only shows the shape: PERCH_BENCH_SOAK_MINUTES=30 for the figure the README quotes`]),
        ],
        figures: {
          cameras: CAMERAS,
          cameraFps: CAMERA_FPS,
          bounds: { soakSettledMiB: SOAK_BOUND_SETTLED_MIB, swapMiB: SWAP_BOUND_MIB, soakJudgedFromMinutes: SOAK_MIN_MINUTES_TO_JUDGE },
          rssMiB: { idle: round(idle / MiB, 1), active: round(active / MiB, 1), ffmpegTotal: round(ffmpegRss / MiB, 1), idleNoCameras: round(idleNoCameras / MiB, 1) },
          soak: {
            minutes: soakMinutes,
            startMiB: round(first / MiB, 1),
            endMiB: round(last / MiB, 1),
            maxMiB: round(max / MiB, 1),
            warmupSeconds: round(soaked.warmupSeconds, 0),
            settledGrowthMiB: round(soaked.settledGrowth / MiB, 2),
            settledAnonGrowthMiB: round(soaked.settledAnonGrowth / MiB, 2),
            trendMiBPer10Min: round(soaked.fitPer10Min / MiB, 3),
            lastHalfTrendMiBPer10Min: round(soaked.lastHalfFitPer10Min / MiB, 3),
            withinBound: soakJudged ? soakOk : 'not judged',
            /** [seconds, RSS MiB, anonymous MiB] */
            samples: soaked.samples.map((x) => [round(x.seconds, 1), round(x.rss / MiB, 1), round(x.anon / MiB, 1)]),
          },
          swapsWithCameras: swapFigures(live),
          swapsWithoutCameras: swapFigures(bare),
        },
      };
    } finally {
      await site.stop();
    }
  },
};
