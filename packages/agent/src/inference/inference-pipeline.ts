import { EventEmitter } from 'node:events';
import { modelRefOf, type CameraState, type ModelTarget } from '@perch/shared';
import { JitteredBackoff } from '../backoff/jittered-backoff.js';
import { DecoderCpus, type DecoderCpuSetting } from '../camera/decoder-cpus.js';
import { FfmpegCamera } from '../camera/ffmpeg-camera.js';
import type { ResizeMode } from '../camera/ffmpeg-args.js';
import type { CameraConfig } from '../config/agent-config.js';
import type { Logger } from '../log/logger.js';
import type { TelemetryReporter } from '../telemetry/telemetry-reporter.js';
import { FrameScheduler, type FrameResult, type RunOutcome } from './frame-scheduler.js';
import { InferenceRunner } from './inference-runner.js';
import { ShadowRunner } from './shadow-runner.js';
import type { BatchingPolicy } from './worker-protocol.js';

export interface PipelineOptions {
  cameras: CameraConfig[];
  ffmpegPath: string;
  /** niceness of the ffmpeg processes */
  ffmpegNice?: number;
  /** the CPUs the decoders may use (default 'auto': all but those left to inference; see DecoderCpus) */
  decoderCpus?: DecoderCpuSetting;
  intraOpThreads: number;
  /** frames per run for models with a dynamic batch dimension, and how long a batch may wait to fill */
  maxBatch?: number;
  maxBatchDelayMs?: number;
  /** 'auto' (default): batches only where a batch was measured at load to cost less per frame */
  batching?: BatchingPolicy;
  /** runs handed to the worker at once (default 2) */
  pipelineDepth?: 1 | 2;
  allowSpinning?: boolean;
  cameraRestart?: { minMs: number; maxMs: number };
}

export interface ModelToRun {
  modelPath: string;
  target: ModelTarget;
}

/** A model loaded in its own worker and not yet running any camera's frames (see prepare()). */
export interface PreparedModel {
  readonly model: ModelToRun;
  /** the new worker: runs only what it is handed directly, e.g. the golden input */
  readonly runner: InferenceRunner;
}

type PipelineEvents = {
  /** a camera's state changed, for the reported state */
  'camera-state': [];
  /** one frame's inference result, with the frame (for events and snapshots) */
  result: [result: FrameResult];
  /** one run of the active model's worker ended (for its health window) */
  ran: [run: RunOutcome, model: ModelToRun];
  /** the active model's worker died; a fresh one is started with backoff */
  'worker-died': [error: Error, model: ModelToRun];
  /** the challenger's worker died; it is not restarted (the deployment reports it) */
  'shadow-died': [error: Error, model: ModelToRun];
};

/** What the pipeline tells the telemetry: the model and the challenger each window covers. */
export type PipelineTelemetry = Pick<TelemetryReporter, 'aggregator' | 'switchModel'> & Partial<Pick<TelemetryReporter, 'switchShadow'>>;

/**
 * Cameras -> latest-frame slots -> one inference worker -> window statistics,
 * for the active model. activate() loads the new model in a fresh worker
 * first; only if that succeeds does it switch, so a bad model never stops
 * the good one. Cameras run only while a model is active (ffmpeg scales to
 * its input size) and restart when that size changes.
 */
export class InferencePipeline extends EventEmitter<PipelineEvents> {
  private runner: InferenceRunner | null = null;
  private model: ModelToRun | null = null;
  private cameras: FfmpegCamera[] = [];
  /** restarts and stalls of cameras replaced at a model switch: the counters run since the agent started */
  private readonly cameraCounters = new Map<string, { restarts: number; stalls: number }>();
  private readonly scheduler: FrameScheduler;
  private readonly workerBackoff = new JitteredBackoff(1000, 30_000);
  private workerRestart: NodeJS.Timeout | null = null;
  private stopped = false;
  /** the challenger in shadow mode, if any */
  private shadow: ShadowRunner | null = null;
  private readonly decoderCpus: DecoderCpus;
  /** frames per run each model (by sha256) was timed to deserve with batching 'auto': timed once, not at every swap or worker restart */
  private readonly framesPerRun = new Map<string, number>();

  constructor(
    private readonly opts: PipelineOptions,
    /** only the window statistics and model switches: standalone mode runs with no telemetry to send */
    private readonly telemetry: PipelineTelemetry,
    private readonly log: Logger,
  ) {
    super();
    // Throws DecoderCpuError on a list of CPUs the agent may not use: a config error, at startup.
    this.decoderCpus = new DecoderCpus({ setting: opts.decoderCpus ?? 'auto', inferenceThreads: opts.intraOpThreads }, () => this.cameras.flatMap((c) => c.pid ?? []), log);
    this.scheduler = new FrameScheduler(telemetry.aggregator, log, { maxBatchDelayMs: opts.maxBatchDelayMs ?? 0, pipelineDepth: opts.pipelineDepth });
    this.scheduler.on('result', (r) => this.emit('result', r));
    this.scheduler.on('ran', (run) => {
      if (this.model) this.emit('ran', run, this.model);
    });
  }

  get activeModel(): ModelToRun | null {
    return this.model;
  }

  /** The challenger running in shadow mode, if any. */
  get shadowModel(): ModelToRun | null {
    return this.shadow?.model ?? null;
  }

  get shadowSampleRate(): number | null {
    return this.shadow?.sampleRate ?? null;
  }

  /** Whether the decoders are kept off inference's CPUs now, and the CPU cores they used over the last sample. */
  get decoders(): { confined: boolean; coresUsed: number } {
    return { confined: this.decoderCpus.isConfined, coresUsed: this.decoderCpus.coresUsed };
  }

  start(): void {
    this.stopped = false;
    this.scheduler.start();
    this.decoderCpus.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.decoderCpus.stop();
    this.clearWorkerRestart();
    await this.stopCameras();
    await this.stopShadow();
    // The loop may be waiting on the worker: stopping the worker first releases it.
    const loopStopped = this.scheduler.stop();
    await this.runner?.stop();
    this.runner = null;
    await loopStopped;
  }

  /** Loads `next` in a fresh worker and switches to it; throws ModelLoadError and keeps the old one running. */
  async activate(next: ModelToRun): Promise<void> {
    await this.switchTo(await this.prepare(next));
  }

  /**
   * Loads `next` in a fresh worker beside the running one, which goes on
   * with the cameras; throws ModelLoadError. The caller then switches to it
   * (switchTo) or throws it away (discard).
   */
  async prepare(next: ModelToRun): Promise<PreparedModel> {
    return { model: next, runner: await this.startRunner(next) };
  }

  async discard(prepared: PreparedModel): Promise<void> {
    if (prepared.runner !== this.runner) await prepared.runner.stop();
  }

  /** Hands the cameras to a prepared model and stops the old worker. */
  async switchTo(prepared: PreparedModel): Promise<void> {
    const { model: next, runner } = prepared;
    this.clearWorkerRestart();
    const meta = next.target.custom.metadata;
    const old = this.runner;
    // A new input size or fit means new ffmpeg filters.
    const sizeChanged =
      this.cameras.length === 0 ||
      this.cameras.some((c) => c.size.width !== meta.input.width || c.size.height !== meta.input.height || c.size.resize !== meta.input.resize);
    if (sizeChanged) {
      await this.stopCameras();
      this.scheduler.clear();
    }
    this.telemetry.switchModel(modelRefOf(next.target));
    this.runner = runner;
    this.model = next;
    this.scheduler.setRunner(runner);
    await old?.stop();
    if (sizeChanged) this.startCameras(meta.input.width, meta.input.height, meta.input.resize);
    this.log.info({ model: modelRefOf(next.target), cameras: this.cameras.length }, 'model active');
  }

  /**
   * Loads a challenger in a fresh worker of its own, one frame per run,
   * beside the champion; throws ModelLoadError. Its golden input is run
   * (on `runner`) before startShadow feeds it any frame.
   */
  async prepareShadow(model: ModelToRun): Promise<PreparedModel> {
    return { model, runner: await this.startRunner(model, 1) };
  }

  /** Runs a prepared challenger on `sampleRate` of the champion's frames, replacing the one before. */
  async startShadow(prepared: PreparedModel, sampleRate: number): Promise<void> {
    await this.stopShadow();
    const shadow = new ShadowRunner(prepared.model, prepared.runner, sampleRate, this.telemetry.aggregator, this.log);
    shadow.on('died', (err) => {
      if (this.shadow !== shadow || this.stopped) return;
      this.log.error({ err: err.message, model: modelRefOf(shadow.model.target) }, 'challenger worker died');
      this.emit('shadow-died', err, shadow.model);
    });
    this.shadow = shadow;
    this.switchShadowWindow(shadow);
    this.scheduler.setTap(shadow);
    this.log.info({ model: modelRefOf(prepared.model.target), sampleRate }, 'challenger running in shadow mode');
  }

  setShadowSampleRate(sampleRate: number): void {
    const shadow = this.shadow;
    if (!shadow || shadow.sampleRate === sampleRate) return;
    shadow.sampleRate = sampleRate;
    this.switchShadowWindow(shadow);
  }

  /** Stops the challenger (only if it still runs `of`, when given) and its worker; the champion runs on untouched. */
  async stopShadow(of?: ModelToRun): Promise<void> {
    const shadow = this.shadow;
    if (!shadow || (of && shadow.model !== of)) return;
    this.shadow = null;
    this.scheduler.setTap(null);
    this.switchShadowWindow(null);
    await shadow.stop();
    this.log.info({ model: modelRefOf(shadow.model.target) }, 'challenger stopped');
  }

  private switchShadowWindow(shadow: ShadowRunner | null): void {
    const challenger = shadow ? { model: modelRefOf(shadow.model.target), sampleRate: shadow.sampleRate } : null;
    if (this.telemetry.switchShadow) this.telemetry.switchShadow(challenger);
    else this.telemetry.aggregator.switchShadow(challenger);
  }

  /** Runs no model: cameras and worker stop. */
  async deactivate(): Promise<void> {
    this.clearWorkerRestart();
    await this.stopCameras();
    this.scheduler.setRunner(null);
    this.scheduler.clear();
    const old = this.runner;
    this.runner = null;
    this.model = null;
    this.telemetry.switchModel(null);
    await old?.stop();
    this.log.info('no model active; cameras stopped');
  }

  cameraStates(): CameraState[] {
    const running = new Map(this.cameras.map((c) => [c.id, c.state()]));
    return this.opts.cameras.map(
      (c) => running.get(c.id) ?? { cameraId: c.id, state: 'offline', framesPerSecond: 0, restarts: 0, stalls: 0, ...this.cameraCounters.get(c.id), lastError: 'no model active' },
    );
  }

  private async startRunner(model: ModelToRun, maxBatch = this.opts.maxBatch ?? 1): Promise<InferenceRunner> {
    const sha256 = model.target.hashes.sha256;
    const timed = (this.opts.batching ?? 'auto') === 'auto' ? this.framesPerRun.get(sha256) : undefined;
    const runner = new InferenceRunner({
      modelPath: model.modelPath,
      metadata: model.target.custom.metadata,
      intraOpThreads: this.opts.intraOpThreads,
      maxBatch: timed === undefined ? maxBatch : Math.min(maxBatch, timed),
      batching: timed === undefined ? (this.opts.batching ?? 'auto') : 'always',
      allowSpinning: this.opts.allowSpinning ?? false,
    });
    await runner.start();
    const c = runner.calibration;
    if (c) {
      this.framesPerRun.set(sha256, runner.maxBatch);
      const cost = { batch: c.batch, singleMs: Number(c.singleMs.toFixed(2)), batchPerFrameMs: Number(c.batchPerFrameMs.toFixed(2)) };
      this.log.info({ model: modelRefOf(model.target), ...cost, framesPerRun: runner.maxBatch }, runner.maxBatch > 1 ? 'batching cameras: a batch costs less per frame' : 'not batching: a batch costs as much per frame as single frames here');
    }
    runner.on('exit', (err) => this.onWorkerDeath(runner, err));
    return runner;
  }

  /** A crashed worker is replaced by a fresh one on the same model, with backoff. */
  private onWorkerDeath(runner: InferenceRunner, err: Error): void {
    if (runner !== this.runner || this.stopped) return;
    this.log.error({ err: err.message }, 'inference worker died; restarting it');
    if (this.model) this.emit('worker-died', err, this.model);
    this.scheduleWorkerRestart();
  }

  private scheduleWorkerRestart(): void {
    const model = this.model;
    if (!model || this.workerRestart) return;
    this.workerRestart = setTimeout(() => {
      this.workerRestart = null;
      if (this.model !== model || this.stopped) return;
      this.startRunner(model).then(
        (runner) => {
          if (this.model !== model || this.stopped) return void runner.stop();
          this.workerBackoff.reset();
          this.runner = runner;
          this.scheduler.setRunner(runner);
          this.log.info('inference worker restarted');
        },
        (e: Error) => {
          this.log.error({ err: e.message }, 'inference worker restart failed');
          this.scheduleWorkerRestart();
        },
      );
    }, this.workerBackoff.next());
  }

  private clearWorkerRestart(): void {
    if (this.workerRestart) clearTimeout(this.workerRestart);
    this.workerRestart = null;
  }

  /**
   * Camera k of n takes its frames k/n of an interval into each wall-clock
   * interval (see rateFilter): otherwise cameras started together deliver
   * in the same millisecond, and the last frame waits for all the others'
   * inferences. Spread, each frame finds the worker free.
   */
  private startCameras(width: number, height: number, resize: ResizeMode): void {
    const n = this.opts.cameras.length;
    this.cameras = this.opts.cameras.map((cfg, k) => {
      const counters = this.cameraCounters.get(cfg.id);
      const cam = new FfmpegCamera(
        cfg,
        { ffmpegPath: this.opts.ffmpegPath, width, height, resize, restart: this.opts.cameraRestart, nice: this.opts.ffmpegNice, placement: () => this.decoderCpus.placement, phase: k / n, ...(counters ? { counters } : {}) },
        this.log,
      );
      const aggregator = this.telemetry.aggregator;
      cam.on('frame', (frame, at) => this.scheduler.offer(cfg.id, frame, at));
      cam.on('frame-delay', (ms) => aggregator.frameDelayed(cfg.id, ms));
      cam.on('restart', () => aggregator.cameraRestarted(cfg.id));
      cam.on('incident', (i) => aggregator.cameraIncident(cfg.id, i.kind, i.message, i.stalled));
      cam.on('state', (s) => {
        aggregator.cameraState(cfg.id, s.state);
        this.log.info({ camera: s.cameraId, state: s.state, errorKind: s.errorKind, lastError: s.lastError }, 'camera state');
        this.emit('camera-state');
      });
      cam.start();
      return cam;
    });
  }

  private async stopCameras(): Promise<void> {
    const cams = this.cameras;
    this.cameras = [];
    await Promise.all(cams.map((c) => c.stop()));
    for (const c of cams) {
      const { restarts, stalls = 0 } = c.state();
      this.cameraCounters.set(c.id, { restarts, stalls });
    }
  }
}
