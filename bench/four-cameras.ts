/**
 * The deployment the agent is sized for: four 1080p25 H.264 cameras read at
 * 5 frames/s each, a MobileNetV2-sized model, one gateway box of 2 cores.
 * Everything is real: a control plane in this process, the model registered
 * and desired through its REST API and delivered over MQTT, an agent process
 * with four ffmpeg decoders, and the figures read back from the telemetry
 * windows the agent published. Goal: no frame skipped, and a frame's result
 * ready within two inferences of its arrival (p95).
 */
import { readFile } from 'node:fs/promises';
import { parseCpuList, type DecoderCpuSetting } from '@perch/agent';
import { emptyHistogram, histogramCount, LATENCY_SPEC, histogramQuantile, histogramQuantileBin, mergeHistograms, type CameraWindow, type Histogram, type TelemetryWindow } from '@perch/shared';
import { waitUntil } from '../test/support/wait-until.js';
import { bareInference } from './lib/bare-inference.js';
import { mobileNetV2 } from './lib/bench-models.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { cameraClips } from './lib/camera-clip.js';
import { envNumber } from './lib/options.js';
import { PerchSite } from './lib/perch-site.js';
import { childPids, CpuMeter, cpuSeconds, cpusAllowed, rssBytes } from './lib/proc-stats.js';
import { round } from './lib/stats.js';

const CAMERAS = 4;
const CAMERA_FPS = 5;
const DEVICE_ID = 'bench-four-cameras';
/** Short windows, so a 30 s measurement holds several and the warm-up is short. */
const WINDOW_SECONDS = 5;
/** How often the ffmpeg processes' CPU is read, so a restarted one is still counted. */
const CPU_SAMPLE_MS = 500;

interface CameraTotals {
  cameraId: string;
  received: number;
  inferred: number;
  dropped: number;
  errors: number;
  ageAtInference: Histogram;
  ageAtResult: Histogram;
  /** how late frames reached the agent by the stream clock (frameAgeMs.capture) */
  captureDelay: Histogram;
}

function totalsOf(cameraId: string, cams: CameraWindow[]): CameraTotals {
  const t: CameraTotals = {
    cameraId,
    received: 0,
    inferred: 0,
    dropped: 0,
    errors: 0,
    ageAtInference: emptyHistogram(LATENCY_SPEC),
    ageAtResult: emptyHistogram(LATENCY_SPEC),
    captureDelay: emptyHistogram(LATENCY_SPEC),
  };
  for (const c of cams) {
    t.received += c.framesReceived;
    t.inferred += c.framesInferred;
    t.dropped += c.framesDropped;
    t.errors += c.inferenceErrors;
    if (c.frameAgeMs) t.ageAtInference = mergeHistograms(t.ageAtInference, c.frameAgeMs.inference);
    if (c.frameAgeMs?.capture) t.captureDelay = mergeHistograms(t.captureDelay, c.frameAgeMs.capture);
    t.ageAtResult = mergeHistograms(t.ageAtResult, c.latencyMs);
  }
  return t;
}

/** PERCH_BENCH_CAMERA_DECODER_CPUS: 'auto', 'all' or a CPU list ("0,1", "0-2"); unset: the agent's default. */
function decoderCpusFromEnv(value: string | undefined): DecoderCpuSetting | undefined {
  if (value === undefined || value === '') return undefined;
  return value === 'auto' || value === 'all' ? value : parseCpuList(value);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const fourCameras: Benchmark = {
  name: 'four-cameras',
  async run(options, log): Promise<BenchReport> {
    const seconds = envNumber('PERCH_BENCH_CAMERA_SECONDS', 30, { min: WINDOW_SECONDS, max: 3600 });
    // Unset: the agent's own default, which is what ships.
    const maxBatch = process.env['PERCH_BENCH_CAMERA_MAX_BATCH'] ? envNumber('PERCH_BENCH_CAMERA_MAX_BATCH', 4, { min: 1, max: 64, integer: true }) : undefined;
    const ffmpegNice = process.env['PERCH_BENCH_CAMERA_NICE'] ? envNumber('PERCH_BENCH_CAMERA_NICE', 5, { min: 0, max: 19, integer: true }) : undefined;
    const decoderCpuSetting = decoderCpusFromEnv(process.env['PERCH_BENCH_CAMERA_DECODER_CPUS']);
    const clip = await cameraClips(options.workDir, CAMERAS);
    for (const c of clip.clips) log(`camera clip ${c.cached ? 'reused' : 'encoded'}: ${c.path} (${clip.encoding})`);
    const model = await mobileNetV2();

    // The yardstick, measured before the site starts so nothing else competes for the CPU.
    const refMs = Math.min(3000, options.seconds * 1000);
    const one = await bareInference(model, 1, refMs);
    const four = await bareInference(model, CAMERAS, refMs);
    log(`bare session.run p50: ${one.p50Ms} ms per frame, ${four.p50Ms} ms per batch of ${CAMERAS}`);

    const site = await PerchSite.start();
    try {
      const registered = await site.register(model, model.version, await readFile(model.modelPath));
      const { agent, pid } = await site.startAgent({
        deviceId: DEVICE_ID,
        cameras: clip.clips.map((c, i) => ({ id: `cam${i + 1}`, fps: CAMERA_FPS, source: { kind: 'file', path: c.path } })),
        telemetry: { windowSeconds: WINDOW_SECONDS },
        ...(maxBatch !== undefined ? { inference: { maxBatch } } : {}),
        ...(ffmpegNice !== undefined ? { ffmpegNice } : {}),
        ...(decoderCpuSetting !== undefined ? { decoderCpus: decoderCpuSetting } : {}),
        log: { level: 'info' },
      });
      await site.waitOnline(agent);
      const deployStarted = performance.now();
      await site.waitActive(agent, await site.setDesired(DEVICE_ID, registered));
      log(`${model.name} delivered and active in ${((performance.now() - deployStarted) / 1000).toFixed(1)} s; warming up`);

      const ours = (w: TelemetryWindow) => w.model?.sha256 === registered.sha256;
      // Warm-up: until one whole window has every camera inferring, then one more window, so ffmpeg start-up is behind us.
      const warm = await waitUntil(() => site.windows(DEVICE_ID).filter(ours).filter((w) => w.cameras.length === CAMERAS && w.cameras.every((c) => c.framesInferred > 0)).at(0), 'all four cameras inferring', 90_000);
      const startWindow = await waitUntil(() => site.windows(DEVICE_ID).find((w) => w.seq > warm.seq && ours(w)), 'a window after warm-up', 30_000);

      const agentCpuStart = cpuSeconds(pid);
      const ffmpegCpu = new CpuMeter(() => childPids(pid));
      ffmpegCpu.sample();
      const cpStart = process.cpuUsage();
      const wallStart = performance.now();
      log(`measuring ${seconds} s of telemetry windows (${WINDOW_SECONDS} s each) from seq ${startWindow.seq + 1}`);
      let measured: TelemetryWindow[] = [];
      for (;;) {
        await sleep(CPU_SAMPLE_MS);
        ffmpegCpu.sample();
        measured = site.windows(DEVICE_ID).filter((w) => w.seq > startWindow.seq);
        const span = measured.reduce((s, w) => s + (w.windowEnd - w.windowStart), 0);
        if (span >= seconds * 1000) break;
        if (!agent.running) throw new Error(`the agent exited while measuring\n${agent.tail()}`);
      }
      const wallS = (performance.now() - wallStart) / 1000;
      const agentCpuS = cpuSeconds(pid) - agentCpuStart;
      const cpCpu = process.cpuUsage(cpStart);
      const agentRss = rssBytes(pid);
      const ffmpegRss = childPids(pid).reduce((s, p) => s + (rssBytes(p) || 0), 0);
      // Where the agent's decoderCpus put the decoders, and where the agent itself may run.
      const decoderCpus = [...new Set(childPids(pid).map(cpusAllowed))].join(' / ');
      const agentCpus = cpusAllowed(pid);
      if (measured.some((w) => !ours(w))) throw new Error('the model changed while measuring');
      await agent.stop();
      // Measured again once the agent has stopped: the yardstick is the mean of both, and their spread shows the machine's drift.
      const oneAfter = await bareInference(model, 1, refMs);
      const oneP50 = (one.p50Ms + oneAfter.p50Ms) / 2;

      const spanS = measured.reduce((s, w) => s + (w.windowEnd - w.windowStart), 0) / 1000;
      const cameraIds = Array.from({ length: CAMERAS }, (_, i) => `cam${i + 1}`);
      const perCamera = cameraIds.map((id) => totalsOf(id, measured.flatMap((w) => w.cameras.filter((c) => c.cameraId === id))));
      const all = totalsOf('all', measured.flatMap((w) => w.cameras));
      const skipped = all.received > 0 ? all.dropped / all.received : Number.NaN;
      const p95Result = histogramQuantile(all.ageAtResult, 0.95);
      const p95Inference = histogramQuantile(all.ageAtInference, 0.95);
      const bound = 2 * oneP50;
      // Judged on the upper edge of the bin p95 falls in: the histogram cannot say more than that.
      const [p95Lo, p95Hi] = histogramQuantileBin(all.ageAtResult, 0.95);
      const p95Met = p95Hi <= bound;
      // In the agent, under the cameras' load: the typical time from inference start to result.
      const inAgentMs = histogramQuantile(all.ageAtResult, 0.5) - histogramQuantile(all.ageAtInference, 0.5);
      const expectedFrames = CAMERAS * CAMERA_FPS * spanS;
      const restarts = measured.flatMap((w) => w.cameras).reduce((s, c) => s + (c.health?.restarts ?? 0), 0);
      const lag = measured.map((w) => w.eventLoopLagMs).filter((h): h is Histogram => h !== undefined);
      const lagP99 = lag.length > 0 ? histogramQuantile(lag.reduce((a, b) => mergeHistograms(a, b)), 0.99) : Number.NaN;

      const ms = (v: number) => (Number.isNaN(v) ? '-' : v.toFixed(1));
      const pct = (v: number) => `${(v * 100).toFixed(1)} %`;
      const row = (t: CameraTotals, cameras: number): string[] => [
        t.cameraId,
        (t.received / spanS).toFixed(2),
        String(t.received),
        String(t.inferred),
        String(t.dropped),
        pct(t.received > 0 ? t.dropped / t.received : Number.NaN),
        `${ms(histogramQuantile(t.ageAtInference, 0.5))} / ${ms(histogramQuantile(t.ageAtInference, 0.95))}`,
        `${ms(histogramQuantile(t.ageAtResult, 0.5))} / ${ms(histogramQuantile(t.ageAtResult, 0.95))}`,
        `${((t.received / spanS / (CAMERA_FPS * cameras)) * 100).toFixed(0)} %`,
      ];
      const core = (cpuS: number) => `${((cpuS / wallS) * 100).toFixed(0)} % of a core`;
      const cpS = (cpCpu.user + cpCpu.system) / 1e6;
      return {
        title: `Four cameras: ${CAMERAS} x ${clip.width}x${clip.height}p${clip.fps} H.264 files at ${CAMERA_FPS} fps each, ${model.name} ${model.metadata.input.width}x${model.metadata.input.height}, one agent process, ${measured.length} windows (${spanS.toFixed(0)} s)`,
        table: {
          columns: ['camera', 'received fps', 'received', 'inferred', 'skipped', 'skipped %', 'age at inference p50 / p95 ms', 'age at result p50 / p95 ms', 'of camera fps'],
          rows: [...perCamera.map((t) => row(t, 1)), row(all, CAMERAS)],
        },
        notes: [
          `skipped frames ${pct(skipped)} (goal 0 %: ${all.dropped === 0 ? 'met' : 'NOT met'}); frames reaching the agent: ${all.received} of ${Math.round(expectedFrames)} the cameras' ${CAMERA_FPS} fps promise (ffmpeg falling behind would show here, not as skipped)`,
          `p95 frame age at result ${ms(p95Result)} ms, in the bin [${p95Lo}, ${p95Hi}) ms, vs 2 x one inference = ${bound.toFixed(1)} ms (goal, judged on the bin's upper edge: ${p95Met ? 'met' : 'NOT met'}); at inference start p95 ${ms(p95Inference)} ms. One inference (bare session.run p50, no other load from this benchmark): ${oneP50.toFixed(2)} ms (${one.p50Ms} before, ${oneAfter.p50Ms} after); a batch of ${CAMERAS}: ${four.p50Ms} ms; in the agent under the cameras' load, inference start to result p50 ~ ${ms(inAgentMs)} ms`,
          `delay by the stream clock before a frame reached the agent (decoding, backlog; above the quickest frame): p50 ${ms(histogramQuantile(all.captureDelay, 0.5))} / p95 ${ms(histogramQuantile(all.captureDelay, 0.95))} ms over ${histogramCount(all.captureDelay)} frames`,
          `CPU over ${wallS.toFixed(0)} s: agent process ${core(agentCpuS)}, its ${ffmpegCpu.processes} ffmpeg processes ${core(ffmpegCpu.seconds)} together (${core(ffmpegCpu.seconds / CAMERAS)} each), control plane (this process) ${core(cpS)}; 2 cores = 200 %`,
          `RSS at the end: agent ${(agentRss / 2 ** 20).toFixed(0)} MiB, ffmpeg processes ${(ffmpegRss / 2 ** 20).toFixed(0)} MiB together; camera restarts ${restarts}; inference errors ${all.errors}; main-thread loop lag p99 ${ms(lagP99)} ms; decoders on CPU ${decoderCpus}, the agent on CPU ${agentCpus}`,
          `the agent takes each camera's frames in its own slot of the wall clock (${(1000 / CAMERA_FPS / CAMERAS).toFixed(0)} ms apart here), so their frames do not arrive at once; four simultaneous frames would put the last result ~${Math.min(CAMERAS * oneP50, four.p50Ms).toFixed(1)} ms (${CAMERAS} inferences or one batch of ${CAMERAS}) after its arrival`,
          `maxBatch ${maxBatch ?? 'agent default'}; ages come from the windows' ${LATENCY_SPEC} histograms (1 ms bins up to 20 ms, then about 10 % wide), interpolated within a bin`,
        ],
        figures: {
          model: { name: model.name, width: model.metadata.input.width, height: model.metadata.input.height },
          clip: { width: clip.width, height: clip.height, fps: clip.fps, encoding: clip.encoding },
          cameras: CAMERAS,
          cameraFps: CAMERA_FPS,
          maxBatch: maxBatch ?? 'agent default',
          ffmpegNice: ffmpegNice ?? 'agent default',
          decoderCpuSetting: decoderCpuSetting ?? 'agent default',
          windowSeconds: WINDOW_SECONDS,
          measuredSeconds: round(spanS, 1),
          windows: measured.length,
          framesExpected: Math.round(expectedFrames),
          framesReceived: all.received,
          framesInferred: all.inferred,
          framesSkipped: all.dropped,
          inferenceErrors: all.errors,
          skippedRate: round(skipped, 4),
          frameAgeAtResultMs: { p50: round(histogramQuantile(all.ageAtResult, 0.5), 1), p95: round(p95Result, 1), count: histogramCount(all.ageAtResult) },
          captureDelayMs: { p50: round(histogramQuantile(all.captureDelay, 0.5), 1), p95: round(histogramQuantile(all.captureDelay, 0.95), 1), count: histogramCount(all.captureDelay) },
          frameAgeAtInferenceMs: { p50: round(histogramQuantile(all.ageAtInference, 0.5), 1), p95: round(p95Inference, 1), count: histogramCount(all.ageAtInference) },
          bareInferenceMs: { batch1Before: one, batch1After: oneAfter, [`batch${CAMERAS}`]: four },
          inAgentInferenceP50EstimateMs: round(inAgentMs, 1),
          goals: { skippedZero: all.dropped === 0, p95AgeWithinTwoInferences: p95Met, p95BinMs: [p95Lo, p95Hi], boundMs: round(bound, 2) },
          simultaneousArrivalFloorMs: round(Math.min(CAMERAS * oneP50, four.p50Ms), 1),
          cpuShareOfOneCore: {
            agent: round(agentCpuS / wallS),
            ffmpegTotal: round(ffmpegCpu.seconds / wallS),
            ffmpegProcesses: ffmpegCpu.processes,
            controlPlane: round(cpS / wallS),
          },
          rssMiB: { agent: round(agentRss / 2 ** 20, 1), ffmpegTotal: round(ffmpegRss / 2 ** 20, 1) },
          cameraRestarts: restarts,
          cpus: { decoders: decoderCpus, agent: agentCpus },
          eventLoopLagP99Ms: round(lagP99, 1),
          perWindow: measured.map((w) => {
            const t = totalsOf('all', w.cameras);
            return { seq: w.seq, seconds: (w.windowEnd - w.windowStart) / 1000, received: t.received, inferred: t.inferred, skipped: t.dropped, ageAtResultP95Ms: round(histogramQuantile(t.ageAtResult, 0.95), 1) };
          }),
          perCamera: perCamera.map((t) => ({
            cameraId: t.cameraId,
            receivedFps: round(t.received / spanS, 2),
            received: t.received,
            inferred: t.inferred,
            skipped: t.dropped,
            ageAtResultP95Ms: round(histogramQuantile(t.ageAtResult, 0.95), 1),
          })),
        },
      };
    } finally {
      await site.stop();
    }
  },
};
