import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { ModelMetadata } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import type { WindowAggregator } from '../telemetry/window-aggregator.js';
import { challengerInput, resampleRgb24, type ChallengerInput } from './challenger-input.js';
import type { ChampionAnswer, ChampionTap } from './frame-scheduler.js';
import { FrameSampler } from './frame-sampler.js';
import type { ModelToRun } from './inference-pipeline.js';
import type { InferenceResult, InferenceRunner } from './inference-runner.js';
import { top1 } from './postprocess.js';

const ERROR_LOG_INTERVAL_MS = 10_000;

/** Where the comparisons go: the telemetry window (and, through it, the metrics). */
export type ShadowSink = Pick<WindowAggregator, 'shadowCompared' | 'shadowSkipped' | 'shadowError'>;

type ShadowEvents = {
  /** the challenger's worker died on its own */
  died: [error: Error];
};

/**
 * A challenger in shadow mode: its own worker, fed a deterministic sample of
 * the frames the champion ran on. It is handed frames only after the
 * champion answered them, and sampled frames that find it still busy are
 * skipped and counted, never queued: the champion never waits for the
 * challenger, and the challenger's CPU is bounded by the sample rate.
 * Its answers are only compared with the champion's, never acted on.
 */
export class ShadowRunner extends EventEmitter<ShadowEvents> implements ChampionTap {
  private readonly sampler: FrameSampler;
  /** how each champion's frames become this challenger's input, worked out once per champion */
  private readonly inputs = new WeakMap<ModelMetadata, ChallengerInput>();
  private stopped = false;
  private lastErrorLog = 0;

  constructor(
    readonly model: ModelToRun,
    private readonly runner: InferenceRunner,
    sampleRate: number,
    private readonly sink: ShadowSink,
    private readonly log: Logger,
  ) {
    super();
    this.sampler = new FrameSampler(sampleRate);
    runner.on('exit', (err) => {
      if (!this.stopped) this.emit('died', err);
    });
  }

  get sampleRate(): number {
    return this.sampler.rate;
  }

  set sampleRate(rate: number) {
    this.sampler.rate = rate;
  }

  get metadata(): ModelMetadata {
    return this.runner.metadata;
  }

  pick(cameraId: string, champion: ModelMetadata): 'frame' | 'input' | false {
    if (this.stopped) return false;
    const input = this.inputFor(champion);
    if (input.kind === 'incompatible' || !this.sampler.take(cameraId)) return false;
    return input.kind === 'shared' ? 'input' : 'frame';
  }

  /**
   * The picked frames of one champion run go to the challenger together
   * (all cameras of a batch get their turn), or, while it still works on
   * the last ones, none of them do: its queue never outgrows one champion run.
   */
  championAnswered(answers: ChampionAnswer[]): void {
    if (this.stopped) return;
    const busy = this.runner.inFlight > 0;
    for (const a of answers) {
      if (busy) this.sink.shadowSkipped(a.cameraId);
      else this.compare(a);
    }
  }

  private compare(a: ChampionAnswer): void {
    let run: Promise<InferenceResult>;
    try {
      run = this.run(a);
    } catch (err) {
      run = Promise.reject(err as Error);
    }
    run.then(
      (r) => {
        if (this.stopped) return;
        const best = top1(r.probabilities);
        const label = this.runner.metadata.labels[best.index] ?? `#${best.index}`;
        this.sink.shadowCompared(a.cameraId, a.label, label, a.runMs, r.inferenceMs);
      },
      (err: Error) => {
        if (this.stopped) return;
        this.sink.shadowError(a.cameraId);
        const now = performance.now();
        if (now - this.lastErrorLog > ERROR_LOG_INTERVAL_MS) {
          this.lastErrorLog = now;
          this.log.warn({ camera: a.cameraId, err: err.message }, 'challenger inference failed');
        }
      },
    );
  }

  /** Stops feeding it and ends its worker. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.runner.stop();
  }

  private run(a: ChampionAnswer): Promise<InferenceResult> {
    const input = this.inputFor(a.champion);
    if (input.kind === 'shared' && a.input) return this.runner.runInput(a.input);
    if (input.kind === 'resample') {
      const from = a.champion.input;
      const to = this.runner.metadata.input;
      return this.runner.run(resampleRgb24(a.frame, from.width, from.height, to.width, to.height));
    }
    return this.runner.run(a.frame);
  }

  private inputFor(champion: ModelMetadata): ChallengerInput {
    let input = this.inputs.get(champion);
    if (!input) {
      input = challengerInput(champion, this.runner.metadata);
      this.inputs.set(champion, input);
    }
    return input;
  }
}
