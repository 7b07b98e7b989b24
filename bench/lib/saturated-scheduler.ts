/**
 * The agent's real inference path, FrameScheduler + InferenceRunner, fed
 * from a pre-decoded frame source at saturation: every virtual camera offers
 * its next frame the moment its previous one is taken, so a frame is always
 * waiting when the scheduler looks and no camera, pipe or decoder limits the
 * rate. The same frame is offered again (pixels do not change a model's
 * cost, and the scheduler never writes to a frame), so the source costs
 * nothing on the path being measured.
 */
import { performance } from 'node:perf_hooks';
import { createLogger, FrameScheduler, InferenceRunner, WindowAggregator, type FrameResult } from '@perch/agent';
import type { ModelMetadata } from '@perch/shared';

/** An InferenceRunner that also keeps the worker's own time per run (session.run + softmax) and the preprocessing time before it. */
class TimedRunner extends InferenceRunner {
  readonly workerMs: number[] = [];
  readonly preprocessMs: number[] = [];
  readonly batchSizes: number[] = [];

  override runBatch(frames: Uint8Array[]): ReturnType<InferenceRunner['runBatch']> {
    return super.runBatch(frames).then((r) => {
      this.workerMs.push(r.inferenceMs);
      this.preprocessMs.push(r.preprocessMs);
      this.batchSizes.push(frames.length);
      return r;
    });
  }
}

export interface SaturatedFigures {
  /** frames whose results came back after each round's first result */
  frames: number;
  /** from each round's first result to its last, summed: steady state, no start-up or drain */
  elapsedMs: number;
  /** per run: the worker's time, the preprocessing time before it, and frames per run */
  workerMs: number[];
  preprocessMs: number[];
  batchSizes: number[];
}

export class SaturatedScheduler {
  private readonly runner: TimedRunner;
  private readonly scheduler: FrameScheduler;
  private feeding = false;
  private finishTimes: number[] = [];
  private frames = 0;
  private elapsedMs = 0;

  constructor(
    opts: { modelPath: string; metadata: ModelMetadata; maxBatch: number; maxBatchDelayMs: number; pipelineDepth?: number },
    /** one frame per virtual camera */
    private readonly cameraFrames: Uint8Array[],
  ) {
    this.runner = new TimedRunner({ modelPath: opts.modelPath, metadata: opts.metadata, intraOpThreads: 1, maxBatch: opts.maxBatch });
    const aggregator = new WindowAggregator(cameraFrames.map((_, i) => `cam${i}`));
    this.scheduler = new FrameScheduler(aggregator, createLogger('warn'), { maxBatchDelayMs: opts.maxBatchDelayMs, pipelineDepth: opts.pipelineDepth });
    this.scheduler.on('result', (r: FrameResult) => {
      if (this.feeding) this.finishTimes.push(r.finishedAt);
    });
    // The same camera's next frame, at once: its slot is never empty when the scheduler looks.
    this.scheduler.on('dispatched', (cameraIds) => {
      if (!this.feeding) return;
      for (const id of cameraIds) {
        const frame = this.cameraFrames[Number(id.slice(3))];
        if (frame) this.scheduler.offer(id, frame, performance.now());
      }
    });
  }

  /** The runner itself, for the agreement check before any round. */
  get inferenceRunner(): InferenceRunner {
    return this.runner;
  }

  async start(): Promise<void> {
    await this.runner.start();
    this.scheduler.start();
    this.scheduler.setRunner(this.runner);
  }

  async stop(): Promise<void> {
    this.feeding = false;
    await this.runner.stop();
    await this.scheduler.stop();
  }

  /** Runs at saturation for about `durationMs`, then lets the runs handed over finish. */
  async round(durationMs: number): Promise<void> {
    this.finishTimes = [];
    this.feeding = true;
    const now = performance.now();
    this.cameraFrames.forEach((frame, i) => this.scheduler.offer(`cam${i}`, frame, now));
    await new Promise((resolve) => setTimeout(resolve, durationMs));
    this.feeding = false;
    this.scheduler.clear();
    while (this.runner.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 1));
    const first = this.finishTimes[0];
    const last = this.finishTimes.at(-1);
    if (first === undefined || last === undefined) return;
    this.frames += this.finishTimes.filter((t) => t > first).length;
    this.elapsedMs += last - first;
  }

  /** Forgets everything measured so far (after the warm-up). */
  reset(): void {
    this.frames = 0;
    this.elapsedMs = 0;
    this.runner.workerMs.length = 0;
    this.runner.preprocessMs.length = 0;
    this.runner.batchSizes.length = 0;
  }

  get figures(): SaturatedFigures {
    return { frames: this.frames, elapsedMs: this.elapsedMs, workerMs: [...this.runner.workerMs], preprocessMs: [...this.runner.preprocessMs], batchSizes: [...this.runner.batchSizes] };
  }
}
