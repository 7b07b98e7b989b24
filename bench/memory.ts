/**
 * Resident memory of a real agent process, as the kernel counts it (worker
 * threads, onnxruntime's native arenas and all): idle with no model, after a
 * model is activated, over a soak with four cameras running, and across
 * model swaps. A box that is never visited must not grow until the OOM
 * killer restarts it; re-creating onnxruntime sessions leaks
 * (onnxruntime#25325), which is why every swap gets a fresh worker.
 */
import { readFile } from 'node:fs/promises';
import { waitUntil } from '../test/support/wait-until.js';
import { demoModel, mobileNetV2 } from './lib/bench-models.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { cameraClip } from './lib/camera-clip.js';
import { envNumber } from './lib/options.js';
import { PerchSite } from './lib/perch-site.js';
import { childPids, rssBytes } from './lib/proc-stats.js';
import { rebadged } from './lib/rebadged-model.js';
import { linearSlope, median, round } from './lib/stats.js';

const DEVICE_ID = 'bench-memory';
const CAMERAS = 4;
const CAMERA_FPS = 5;
const MiB = 2 ** 20;
/** Several readings a second apart, their median: one reading can land on either side of a garbage collection. */
const SETTLE_READINGS = 5;
const SOAK_SAMPLE_MS = 5000;
/** The start of a soak is the heap settling after activation, not growth: left out of the fit. */
const SOAK_WARMUP_SHARE = 1 / 3;
const SOAK_WARMUP_MAX_S = 300;
/** Shorter soaks are reported but not judged: a few minutes of GC noise look like a trend either way. */
const SOAK_MIN_MINUTES_TO_JUDGE = 10;
/** Swaps before the baseline reading: the first one replaces the soak's bigger model, whose memory is not a swap's. */
const WARMUP_SWAPS = 2;
/**
 * The bounds we hold the agent to. Over a soak the least-squares growth must
 * stay within 1 MiB per 10 minutes: the most a 30-minute soak on a shared
 * machine can resolve (RSS moves by a few MiB with each major GC), and still
 * far from what ends a box (a 1 GiB headroom would last > 7 days even at
 * that rate; a longer soak tightens it). Swaps: at most 0.5 MiB per swap, so
 * a box swapped weekly gains < 30 MiB a year.
 */
const SOAK_BOUND_MIB_PER_10_MIN = 1;
const SWAP_BOUND_MIB = 0.5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function settledRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < SETTLE_READINGS; i++) {
    if (i > 0) await sleep(1000);
    readings.push(rssBytes(pid));
  }
  return median(readings);
}

const mib = (bytes: number, digits = 1) => (bytes / MiB).toFixed(digits);

export const memory: Benchmark = {
  name: 'memory',
  async run(options, log): Promise<BenchReport> {
    const soakMinutes = envNumber('PERCH_BENCH_SOAK_MINUTES', 2, { min: 0.5, max: 24 * 60 });
    const swaps = envNumber('PERCH_BENCH_SWAPS', 50, { min: 2, max: 10_000, integer: true });
    const clip = await cameraClip(options.workDir);
    const mobilenet = await mobileNetV2();
    const demo = await demoModel(options.workDir);
    const demoBytes = await readFile(demo.modelPath);

    const site = await PerchSite.start();
    try {
      const big = await site.register(mobilenet, mobilenet.version, await readFile(mobilenet.modelPath));
      // Two versions of one network, alternated so that every swap is a real download, verification, worker start and switch.
      const swapA = await site.register(demo, '1.0.0', demoBytes);
      const swapB = await site.register(demo, '1.0.1', rebadged(demoBytes, 'perch-bench-swap'));

      const { agent, pid } = await site.startAgent({
        deviceId: DEVICE_ID,
        cameras: Array.from({ length: CAMERAS }, (_, i) => ({ id: `cam${i + 1}`, fps: CAMERA_FPS, source: { kind: 'file', path: clip.path } })),
        telemetry: { windowSeconds: 5 },
        log: { level: 'info' },
      });
      await site.waitOnline(agent);
      await sleep(2000);
      const idle = await settledRss(pid);
      log(`idle, no model: ${mib(idle)} MiB`);

      await site.waitActive(agent, await site.setDesired(DEVICE_ID, big));
      // Cameras start once the model is active: wait for a telemetry window in which all four had frames inferred.
      await waitUntil(
        () => site.windows(DEVICE_ID).some((w) => w.model?.sha256 === big.sha256 && w.cameras.filter((c) => c.framesInferred > 0).length === CAMERAS),
        'four cameras inferring',
        90_000,
      );
      const active = await settledRss(pid);
      log(`${mobilenet.name} active with ${CAMERAS} cameras: ${mib(active)} MiB; soaking for ${soakMinutes} min`);

      const soakStart = performance.now();
      const soakT: number[] = [];
      const soakRss: number[] = [];
      while (performance.now() - soakStart < soakMinutes * 60_000) {
        soakT.push((performance.now() - soakStart) / 1000);
        soakRss.push(rssBytes(pid));
        if (!agent.running) throw new Error(`the agent exited during the soak\n${agent.tail()}`);
        await sleep(SOAK_SAMPLE_MS);
      }
      soakT.push((performance.now() - soakStart) / 1000);
      soakRss.push(rssBytes(pid));
      const ffmpegRss = childPids(pid).reduce((s, p) => s + (rssBytes(p) || 0), 0);
      const warmupS = Math.min(SOAK_WARMUP_MAX_S, soakMinutes * 60 * SOAK_WARMUP_SHARE);
      const fitFrom = Math.max(0, soakT.findIndex((t) => t >= warmupS));
      const soakSlopePer10Min = linearSlope(soakT.slice(fitFrom), soakRss.slice(fitFrom)) * 600;
      const soakFirst = soakRss[0] ?? Number.NaN;
      const soakLast = soakRss.at(-1) ?? Number.NaN;
      const soakMax = Math.max(...soakRss);
      log(`soak: ${mib(soakFirst)} -> ${mib(soakLast)} MiB (max ${mib(soakMax)}), least-squares growth ${mib(soakSlopePer10Min, 2)} MiB per 10 min`);

      // The swaps run on the small demo model so that 50 of them take under a minute; the cameras keep running.
      for (let i = 0; i < WARMUP_SWAPS; i++) await site.waitActive(agent, await site.setDesired(DEVICE_ID, i % 2 === 0 ? swapA : swapB));
      await sleep(5000);
      const beforeSwaps = await settledRss(pid);
      const swapRss: number[] = [];
      const swapStart = performance.now();
      for (let i = 1; i <= swaps; i++) {
        await site.waitActive(agent, await site.setDesired(DEVICE_ID, (WARMUP_SWAPS - 1 + i) % 2 === 0 ? swapA : swapB));
        swapRss.push(rssBytes(pid));
      }
      const swapSeconds = (performance.now() - swapStart) / 1000;
      await sleep(5000);
      const afterSwaps = await settledRss(pid);
      const perSwap = (afterSwaps - beforeSwaps) / swaps;
      const swapSlope = linearSlope(swapRss.map((_, i) => i + 1), swapRss);
      log(`${swaps} swaps in ${swapSeconds.toFixed(0)} s: ${mib(beforeSwaps)} -> ${mib(afterSwaps)} MiB`);

      const soakJudged = soakMinutes >= SOAK_MIN_MINUTES_TO_JUDGE;
      const soakOk = soakSlopePer10Min / MiB <= SOAK_BOUND_MIB_PER_10_MIN;
      const soakVerdict = !soakJudged ? `not judged under ${SOAK_MIN_MINUTES_TO_JUDGE} min` : soakOk ? 'within' : 'EXCEEDED';
      const swapOk = perSwap / MiB <= SWAP_BOUND_MIB && swapSlope / MiB <= SWAP_BOUND_MIB;
      return {
        title: `Agent process memory (VmRSS): ${CAMERAS} x ${clip.width}x${clip.height}p${clip.fps} file cameras at ${CAMERA_FPS} fps, ${mobilenet.name} soak ${soakMinutes} min, ${swaps} swaps between two versions of ${demo.name}`,
        table: {
          columns: ['phase', 'RSS MiB', 'note'],
          rows: [
            ['idle, no model, cameras stopped', mib(idle), 'connected to the control plane, nothing to run'],
            [`${mobilenet.name} active, ${CAMERAS} cameras`, mib(active), `+${mib(active - idle)} MiB over idle; ffmpeg processes ${mib(ffmpegRss, 0)} MiB more, outside the agent`],
            [`soak start -> end (${soakMinutes} min)`, `${mib(soakFirst)} -> ${mib(soakLast)}`, `max ${mib(soakMax)}; growth ${mib(soakSlopePer10Min, 2)} MiB / 10 min after ${(warmupS / 60).toFixed(1)} min (bound ${SOAK_BOUND_MIB_PER_10_MIN}: ${soakVerdict})`],
            [`before -> after ${swaps} swaps`, `${mib(beforeSwaps)} -> ${mib(afterSwaps)}`, `max ${mib(Math.max(...swapRss))}; ${(perSwap / MiB).toFixed(3)} MiB per swap, fit ${(swapSlope / MiB).toFixed(3)} (bound ${SWAP_BOUND_MIB}: ${swapOk ? 'within' : 'EXCEEDED'})`],
          ],
        },
        notes: [
          `bounds: soak growth <= ${SOAK_BOUND_MIB_PER_10_MIN} MiB per 10 min (least-squares over the ${soakRss.length - fitFrom} readings after the first ${(warmupS / 60).toFixed(1)} min, one every ${SOAK_SAMPLE_MS / 1000} s); swaps <= ${SWAP_BOUND_MIB} MiB per swap (after - before over ${swaps}, and the fit over the per-swap readings), after ${WARMUP_SWAPS} warm-up swaps`,
          `soak: ${soakVerdict}; swaps: ${swapOk ? 'within' : 'EXCEEDED'}; each swap downloads, verifies and loads the model in a fresh worker (${(swapSeconds / swaps).toFixed(2)} s per swap here)`,
          ...(soakJudged ? [] : [`a ${soakMinutes}-minute soak only shows the shape: PERCH_BENCH_SOAK_MINUTES=30 for the figure the README quotes`]),
        ],
        figures: {
          cameras: CAMERAS,
          cameraFps: CAMERA_FPS,
          soakMinutes,
          swaps,
          bounds: { soakMiBPer10Min: SOAK_BOUND_MIB_PER_10_MIN, swapMiB: SWAP_BOUND_MIB },
          rssMiB: {
            idle: round(idle / MiB, 1),
            active: round(active / MiB, 1),
            ffmpegTotal: round(ffmpegRss / MiB, 1),
            soakStart: round(soakFirst / MiB, 1),
            soakEnd: round(soakLast / MiB, 1),
            soakMax: round(soakMax / MiB, 1),
            beforeSwaps: round(beforeSwaps / MiB, 1),
            afterSwaps: round(afterSwaps / MiB, 1),
            swapsMax: round(Math.max(...swapRss) / MiB, 1),
          },
          soakGrowthMiBPer10Min: round(soakSlopePer10Min / MiB, 3),
          swapGrowthMiBPerSwap: round(perSwap / MiB, 4),
          swapFitMiBPerSwap: round(swapSlope / MiB, 4),
          secondsPerSwap: round(swapSeconds / swaps, 2),
          soakFitFromSeconds: round(warmupS, 0),
          withinBounds: { soak: soakJudged ? soakOk : 'not judged', swaps: swapOk },
          soakSamples: soakT.map((t, i) => [round(t, 1), round((soakRss[i] ?? Number.NaN) / MiB, 1)]),
          swapSamplesMiB: swapRss.map((r) => round(r / MiB, 1)),
        },
      };
    } finally {
      await site.stop();
    }
  },
};
