import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker, type ModelMetadata } from '@perch/shared';
import { createPreprocessor, type Preprocessor } from './preprocess.js';
import type { BatchCalibration, BatchingPolicy, FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

export interface InferenceResult {
  probabilities: Float32Array;
  /** session.run and the output's conversion, measured in the worker */
  inferenceMs: number;
  /** the frame that was run (the caller's own array) */
  frame: Uint8Array;
}

export interface BatchResult {
  /** `input`: a copy of the frame's preprocessed input, where runBatch was asked to keep it */
  results: { probabilities: Float32Array; frame: Uint8Array; input?: Float32Array }[];
  /** session.run of the whole batch and the outputs' conversion, measured in the worker */
  inferenceMs: number;
  /** preprocessing of the whole batch, on the calling thread */
  preprocessMs: number;
  /** performance.now() on this thread when the worker began the run: later than the call when an earlier run was still going */
  startedAt: number;
}

/** How long a stopping worker may take to finish its runs and release its session before it is terminated. */
const CLOSE_GRACE_MS = 10_000;

/** The frame of a run handed over already preprocessed (runInput). */
const NO_FRAME = new Uint8Array(0);

/** Input buffers kept for reuse: one per run that can be in flight, and one being filled. */
const INPUT_POOL_SIZE = 3;

export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}

export class InferenceError extends Error {
  override readonly name = 'InferenceError';
}

export interface InferenceRunnerOptions {
  modelPath: string;
  metadata: ModelMetadata;
  intraOpThreads: number;
  /** frames per run when the model's batch dimension is dynamic (default 1) */
  maxBatch?: number;
  /** 'auto': batches only where the worker measured at load that they cost less per frame (default 'always') */
  batching?: BatchingPolicy;
  /** let onnxruntime's idle threads spin (default off: they would steal ffmpeg's CPU) */
  allowSpinning?: boolean;
}

interface PendingRun {
  frames: Uint8Array[];
  /** frames whose preprocessed input is copied out before the buffer is reused */
  keepInputs: readonly boolean[] | undefined;
  preprocessMs: number;
  resolve: (r: BatchResult) => void;
  reject: (e: Error) => void;
}

type RunnerEvents = {
  /** the worker died on its own (not by stop()) */
  exit: [error: Error];
};

/**
 * The main thread's side of one inference worker: start() loads the model
 * (and fails with ModelLoadError, leaving whatever runs now alone), run()
 * and runBatch() preprocess frames and hand them over, stop() lets the
 * worker finish and end. Several runs may be handed over at once: the worker
 * takes them in order.
 */
export class InferenceRunner extends EventEmitter<RunnerEvents> {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, PendingRun>();
  private stopping = false;
  private batch = 1;
  private measured: BatchCalibration | undefined;
  private readonly preprocess: Preprocessor;
  private readonly frameValues: number;
  private readonly inputPool: Float32Array[] = [];

  constructor(readonly opts: InferenceRunnerOptions) {
    super();
    this.preprocess = createPreprocessor(opts.metadata);
    this.frameValues = opts.metadata.input.width * opts.metadata.input.height * 3;
  }

  /** Runs handed to the worker and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  get metadata(): ModelMetadata {
    return this.opts.metadata;
  }

  /** How many frames one run may carry: 1 unless the model's batch dimension is dynamic (and, with batching 'auto', batches pay). */
  get maxBatch(): number {
    return this.batch;
  }

  /** What the worker measured at load to decide on batching ('auto' with a dynamic batch only). */
  get calibration(): BatchCalibration | undefined {
    return this.measured;
  }

  async start(): Promise<void> {
    if (this.worker) throw new Error('inference runner already started');
    const init: WorkerInit = { modelPath: this.opts.modelPath, metadata: this.opts.metadata, intraOpThreads: this.opts.intraOpThreads, allowSpinning: this.opts.allowSpinning ?? false, maxBatch: this.opts.maxBatch ?? 1, batching: this.opts.batching ?? 'always' };
    const worker = spawnModuleWorker(import.meta.url, 'inference-worker', { workerData: init });
    this.worker = worker;
    // Only our own listeners are removed: a Worker keeps internal ones on itself.
    let onMessage!: (msg: FromWorker) => void;
    let onError!: (err: Error) => void;
    let onExit!: (code: number) => void;
    try {
      await new Promise<void>((resolve, reject) => {
        onMessage = (msg) => {
          if (msg.type === 'ready') {
            this.batch = msg.maxBatch;
            this.measured = msg.calibration;
            resolve();
          }
          else if (msg.type === 'load-error') reject(new ModelLoadError(`model failed to load: ${msg.message}`));
        };
        onError = (err) => reject(new ModelLoadError(`inference worker crashed while loading: ${err.message}`));
        onExit = (code) => reject(new ModelLoadError(`inference worker exited with code ${code} while loading`));
        worker.on('message', onMessage);
        worker.on('error', onError);
        worker.on('exit', onExit);
      });
    } catch (err) {
      this.worker = null;
      await worker.terminate();
      throw err;
    } finally {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    }
    worker.on('message', this.onMessage);
    worker.on('error', this.onError);
    worker.on('exit', this.onExit);
  }

  /** Runs one rgb24 frame of the model's size; the frame stays the caller's and is not changed. */
  async run(frame: Uint8Array): Promise<InferenceResult> {
    const { results, inferenceMs } = await this.runBatch([frame]);
    const first = results[0];
    if (!first) throw new InferenceError('the worker returned no result');
    return { ...first, inferenceMs };
  }

  /**
   * Runs one frame already preprocessed for this model (e.g. another
   * model's input, identical because both preprocess alike). The array
   * moves to the worker and is not the caller's any more.
   */
  async runInput(input: Float32Array): Promise<InferenceResult> {
    if (input.length !== this.frameValues) throw new InferenceError(`a preprocessed frame has ${this.frameValues} values, got ${input.length}`);
    const worker = this.worker;
    if (!worker) throw new InferenceError('inference runner is not running');
    const { results, inferenceMs } = await this.send(worker, input, [NO_FRAME], undefined, 0);
    const first = results[0];
    if (!first) throw new InferenceError('the worker returned no result');
    return { ...first, inferenceMs };
  }

  /**
   * Runs up to maxBatch frames in one session.run; results come back in
   * order. The frames are preprocessed here, into a pooled buffer that moves
   * to the worker and back, so the worker only runs the session and a run
   * handed over while another is going starts the moment that one ends.
   * `keepInputs[i]` asks for a copy of frame i's preprocessed input with its
   * result (a challenger in shadow mode runs the very same input).
   */
  runBatch(frames: Uint8Array[], keepInputs?: readonly boolean[]): Promise<BatchResult> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new InferenceError('inference runner is not running'));
    if (frames.length === 0 || frames.length > this.batch) return Promise.reject(new InferenceError(`a run takes 1 to ${this.batch} frames, got ${frames.length}`));
    const started = performance.now();
    const input = this.inputPool.pop() ?? new Float32Array(this.batch * this.frameValues);
    const fv = this.frameValues;
    try {
      frames.forEach((f, i) => this.preprocess(f, input.subarray(i * fv, (i + 1) * fv)));
    } catch (err) {
      this.recycle(input);
      return Promise.reject(new InferenceError((err as Error).message));
    }
    return this.send(worker, input, frames, keepInputs, performance.now() - started);
  }

  private send(worker: Worker, input: Float32Array, frames: Uint8Array[], keepInputs: readonly boolean[] | undefined, preprocessMs: number): Promise<BatchResult> {
    const id = this.nextId++;
    return new Promise<BatchResult>((resolve, reject) => {
      this.pending.set(id, { frames, keepInputs, preprocessMs, resolve, reject });
      const msg: ToWorker = { type: 'run', id, frames: frames.length, input: input.buffer as ArrayBuffer };
      worker.postMessage(msg, [msg.input]);
    });
  }

  private recycle(input: Float32Array): void {
    if (input.length === this.batch * this.frameValues && this.inputPool.length < INPUT_POOL_SIZE) this.inputPool.push(input);
  }

  /**
   * Asks the worker to finish what it was handed, release the session and
   * end; only a worker that does not end within CLOSE_GRACE_MS is
   * terminated. Terminating a worker inside session.run aborts the whole
   * process (onnxruntime-node's native code throws into a torn-down thread),
   * which a model swap with frames in flight used to do.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const worker = this.worker;
    this.worker = null;
    this.failPending(new InferenceError('inference runner stopped'));
    if (worker) {
      this.detach(worker);
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      // Results still coming back are not waited for; an 'error' must not go unhandled.
      worker.on('error', () => undefined);
      worker.postMessage({ type: 'close' } satisfies ToWorker);
      const timer = setTimeout(() => void worker.terminate(), CLOSE_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
  }

  private readonly onError = (err: Error) => this.onDeath(new InferenceError(`inference worker crashed: ${err.message}`));
  private readonly onExit = (code: number) => this.onDeath(new InferenceError(`inference worker exited with code ${code}`));

  private detach(worker: Worker): void {
    worker.off('message', this.onMessage);
    worker.off('error', this.onError);
    worker.off('exit', this.onExit);
  }

  private readonly onMessage = (msg: FromWorker): void => {
    if (msg.type !== 'result' && msg.type !== 'run-error') return;
    const input = new Float32Array(msg.input);
    const p = this.pending.get(msg.id);
    if (p) this.pending.delete(msg.id);
    if (p && msg.type === 'result') {
      const labels = this.opts.metadata.labels.length;
      const fv = this.frameValues;
      // Copied before the buffer goes back to the pool, where the next run overwrites it.
      const results = p.frames.map((frame, i) => ({
        probabilities: msg.probabilities.subarray(i * labels, (i + 1) * labels),
        frame,
        ...(p.keepInputs?.[i] ? { input: input.slice(i * fv, (i + 1) * fv) } : {}),
      }));
      p.resolve({ results, inferenceMs: msg.inferenceMs, preprocessMs: p.preprocessMs, startedAt: msg.startedAt - performance.timeOrigin });
    } else if (p && msg.type === 'run-error') p.reject(new InferenceError(msg.message));
    this.recycle(input);
  };

  private onDeath(err: Error): void {
    if (this.stopping || !this.worker) return;
    this.detach(this.worker);
    this.worker = null;
    this.failPending(err);
    this.emit('exit', err);
  }

  private failPending(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
