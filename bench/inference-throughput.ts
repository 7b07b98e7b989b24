/**
 * Frames per second through the demo model: bare onnxruntime-node on the
 * main thread (the ceiling: no worker, no preprocessing, no copies) against
 * the agent's InferenceRunner (raw rgb24 frames preprocessed on the calling
 * thread into pooled buffers, run in a worker thread, results posted back).
 * The ratio is the price of keeping the event loop free; the main-thread
 * columns show what that buys.
 */
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { InferenceSession, Tensor, env as ortEnv } from 'onnxruntime-node';
import { agentSessionOptions, createPreprocessor, InferenceRunner, inputDims } from '@perch/agent';
import { buildDemoModel, DEMO_MODEL_NAME, DEMO_MODEL_VERSION } from '@perch/control-plane';
import { modelMetadataSchema } from '@perch/shared';
import { checkAgreement } from './lib/agreement.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { syntheticFrames } from './lib/frames.js';
import { MainThreadProbe } from './lib/main-thread-probe.js';
import { round, summarizeLatencies } from './lib/stats.js';
import { LoopSample, runFor } from './lib/timed-loop.js';

/** The agent's own session options: the baseline runs the same engine configuration and only the path around it differs. */
const AGENT_SESSION_OPTIONS = agentSessionOptions(1);

const FRAME_COUNT = 8;
/** Variants alternate in rounds (ABBA order) so drift on a shared machine hits both alike. */
const ROUNDS = 6;

interface VariantFigures {
  framesPerSecond: number;
  runs: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  /** share of the main thread's event loop that was busy, 0..1 */
  mainThreadUtilization: number;
  eventLoopLagP99Ms: number;
  eventLoopLagMaxMs: number;
}

function variantFigures(sample: LoopSample, main: MainThreadProbe): VariantFigures {
  const lat = summarizeLatencies(sample.latenciesMs);
  return {
    framesPerSecond: round(sample.perSecond, 1),
    runs: sample.runs,
    p50Ms: round(lat.p50Ms),
    p95Ms: round(lat.p95Ms),
    maxMs: round(lat.maxMs),
    mainThreadUtilization: round(main.utilization),
    eventLoopLagP99Ms: round(main.lagP99Ms),
    eventLoopLagMaxMs: round(main.lagMaxMs),
  };
}

export const inferenceThroughput: Benchmark = {
  name: 'inference-throughput',
  async run(options, log): Promise<BenchReport> {
    const builtAt = performance.now();
    const demo = await buildDemoModel({ outDir: options.workDir });
    log(`demo model ${demo.cached ? 'reused from' : 'built into'} ${demo.modelPath} (${((performance.now() - builtAt) / 1000).toFixed(1)} s)`);
    // Parsed from the file with the device-side contract, as the agent reads it
    // (that schema keeps only what inference needs: no name, version or training record).
    const metadata = modelMetadataSchema.parse(JSON.parse(await readFile(demo.metadataPath, 'utf8')));
    const { width, height } = metadata.input;
    const frames = syntheticFrames(width, height, FRAME_COUNT);
    const preprocess = createPreprocessor(metadata);
    const dims = inputDims(metadata);
    const tensors = frames.map((f) => new Tensor('float32', preprocess(f), dims));

    const session = await InferenceSession.create(demo.modelPath, AGENT_SESSION_OPTIONS);
    const runner = new InferenceRunner({ modelPath: demo.modelPath, metadata, intraOpThreads: 1 });
    await runner.start();
    try {
      let bareIndex = 0;
      const bare = async (): Promise<unknown> => {
        const tensor = tensors[bareIndex++ % tensors.length];
        if (!tensor) throw new Error('no input tensor');
        return session.run({ [metadata.input.name]: tensor });
      };
      let agentIndex = 0;
      const workerMs: number[] = [];
      const agent = async (): Promise<unknown> => {
        const frame = frames[agentIndex++ % frames.length];
        if (!frame) throw new Error('no frame');
        // A fresh buffer per run, as from the camera: run() transfers it to the worker.
        const result = await runner.run(frame.slice());
        workerMs.push(result.inferenceMs);
        return result;
      };

      const maxDifference = await checkAgreement(
        frames.map((frame, i) => ({ frames: [frame], tensor: tensors[i] ?? new Tensor('float32', preprocess(frame), dims) })),
        session,
        runner,
        metadata,
      );

      const idle = new MainThreadProbe();
      await idle.during(() => sleep(300));

      const warmupMs = Math.min(1000, options.seconds * 200);
      await runFor(warmupMs, bare);
      await runFor(warmupMs, agent);
      workerMs.length = 0;

      const roundMs = (options.seconds * 1000) / ROUNDS;
      const bareSample = new LoopSample();
      const agentSample = new LoopSample();
      const bareMain = new MainThreadProbe();
      const agentMain = new MainThreadProbe();
      log(`measuring: ${ROUNDS} alternating rounds of ${(roundMs / 1000).toFixed(2)} s per path, after ${(warmupMs / 1000).toFixed(1)} s warm-up each`);
      for (let r = 0; r < ROUNDS; r++) {
        const measureBare = () => bareMain.during(() => runFor(roundMs, bare, bareSample));
        const measureAgent = () => agentMain.during(() => runFor(roundMs, agent, agentSample));
        if (r % 2 === 0) {
          await measureBare();
          await measureAgent();
        } else {
          await measureAgent();
          await measureBare();
        }
      }

      const bareFig = variantFigures(bareSample, bareMain);
      const agentFig = { ...variantFigures(agentSample, agentMain), workerP50Ms: round(summarizeLatencies(workerMs).p50Ms) };
      const throughputRatio = round(agentSample.perSecond / bareSample.perSecond);
      const p50Ratio = round(agentFig.p50Ms / bareFig.p50Ms);
      const idleLagP99Ms = round(idle.lagP99Ms);
      const modelBytes = (await stat(demo.modelPath)).size;

      const ms = (v: number): string => v.toFixed(3);
      const pct = (v: number): string => `${(v * 100).toFixed(0)} %`;
      return {
        title: `Inference throughput: ${DEMO_MODEL_NAME} ${DEMO_MODEL_VERSION} (${width}x${height} ${metadata.input.layout}), batch 1, sequential, 1 intra-op thread`,
        table: {
          columns: ['path', 'frames/s', 'vs bare', 'p50 ms', 'p95 ms', 'main thread busy', 'loop lag p99 ms'],
          rows: [
            ['bare session.run (main thread)', bareFig.framesPerSecond.toFixed(1), '1.000', ms(bareFig.p50Ms), ms(bareFig.p95Ms), pct(bareFig.mainThreadUtilization), ms(bareFig.eventLoopLagP99Ms)],
            ['agent InferenceRunner (worker)', agentFig.framesPerSecond.toFixed(1), throughputRatio.toFixed(3), ms(agentFig.p50Ms), ms(agentFig.p95Ms), pct(agentFig.mainThreadUtilization), ms(agentFig.eventLoopLagP99Ms)],
          ],
        },
        notes: [
          `agent / bare throughput = ${throughputRatio.toFixed(3)}; p50 latency agent / bare = ${p50Ratio.toFixed(3)}`,
          `in the worker (session.run + softmax) p50 = ${ms(agentFig.workerP50Ms)} ms; the rest of the agent's p50 is preprocessing on the calling thread and the thread hop (one run at a time here: the scheduler's early hand-over is measured by pipeline-saturation)`,
          `main-thread loop lag with nothing running: p99 ${ms(idleLagP99Ms)} ms; on the bare path a timer waits out at most one session.run (p95 ${ms(bareFig.p95Ms)} ms here, far more for a bigger model)`,
          `both paths agree on all ${FRAME_COUNT} frames (max |dp| = ${maxDifference.toExponential(1)})`,
        ],
        figures: {
          model: { name: DEMO_MODEL_NAME, version: DEMO_MODEL_VERSION, width, height, layout: metadata.input.layout, bytes: modelBytes },
          onnxruntimeNode: ortEnv.versions['node'] ?? 'unknown',
          sessionOptions: AGENT_SESSION_OPTIONS,
          frames: FRAME_COUNT,
          rounds: ROUNDS,
          warmupSeconds: warmupMs / 1000,
          secondsPerPath: options.seconds,
          bare: bareFig,
          agent: agentFig,
          ratios: { throughput: throughputRatio, p50Latency: p50Ratio },
          idleEventLoopLagP99Ms: idleLagP99Ms,
          maxProbabilityDifference: maxDifference,
        },
      };
    } finally {
      await runner.stop();
      await session.release();
    }
  },
};
