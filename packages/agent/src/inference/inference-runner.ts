import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ModelMetadata } from '@perch/shared';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

export interface InferenceResult {
  probabilities: Float32Array;
  /** preprocessing plus session.run, measured in the worker */
  inferenceMs: number;
  /** the frame that was run, handed back by the worker */
  frame: Uint8Array;
}

export interface BatchResult {
  results: { probabilities: Float32Array; frame: Uint8Array }[];
  /** preprocessing plus session.run of the whole batch, measured in the worker */
  inferenceMs: number;
}

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
  /** let onnxruntime's idle threads spin (default off: they would steal ffmpeg's CPU) */
  allowSpinning?: boolean;
}

type RunnerEvents = {
  /** the worker died on its own (not by stop()) */
  exit: [error: Error];
};

/**
 * The main thread's side of one inference worker: start() loads the model
 * (and fails with ModelLoadError, leaving whatever runs now alone), run()
 * hands a frame over without copying it, stop() terminates the worker.
 */
export class InferenceRunner extends EventEmitter<RunnerEvents> {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void }>();
  private stopping = false;
  private batch = 1;

  constructor(readonly opts: InferenceRunnerOptions) {
    super();
  }

  get metadata(): ModelMetadata {
    return this.opts.metadata;
  }

  /** How many frames one run may carry: 1 unless the model's batch dimension is dynamic. */
  get maxBatch(): number {
    return this.batch;
  }

  async start(): Promise<void> {
    if (this.worker) throw new Error('inference runner already started');
    const init: WorkerInit = { modelPath: this.opts.modelPath, metadata: this.opts.metadata, intraOpThreads: this.opts.intraOpThreads, allowSpinning: this.opts.allowSpinning ?? false, maxBatch: this.opts.maxBatch ?? 1 };
    const worker = spawnWorker(init);
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

  /**
   * Runs one rgb24 frame of the model's size. The frame's buffer moves to the
   * worker and comes back in the result (the caller must not touch the one it
   * passed); a view into a larger buffer is copied first, since transferring
   * would take the whole buffer.
   */
  async run(frame: Uint8Array): Promise<InferenceResult> {
    const { results, inferenceMs } = await this.runBatch([frame]);
    const first = results[0];
    if (!first) throw new InferenceError('the worker returned no result');
    return { ...first, inferenceMs };
  }

  /** Runs up to maxBatch frames in one session.run; results come back in order. */
  runBatch(frames: Uint8Array[]): Promise<BatchResult> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new InferenceError('inference runner is not running'));
    if (frames.length === 0 || frames.length > this.batch) return Promise.reject(new InferenceError(`a run takes 1 to ${this.batch} frames, got ${frames.length}`));
    const owned = frames.map((f) => (f.byteOffset === 0 && f.byteLength === f.buffer.byteLength && f.buffer instanceof ArrayBuffer ? f : f.slice()));
    const id = this.nextId++;
    return new Promise<BatchResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg: ToWorker = { type: 'run', id, frames: owned.map((f) => f.buffer as ArrayBuffer) };
      worker.postMessage(msg, msg.frames);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const worker = this.worker;
    this.worker = null;
    this.failPending(new InferenceError('inference runner stopped'));
    if (worker) {
      this.detach(worker);
      await worker.terminate();
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
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.type === 'result') {
      const labels = this.opts.metadata.labels.length;
      const results = msg.frames.map((f, i) => ({ probabilities: msg.probabilities.subarray(i * labels, (i + 1) * labels), frame: new Uint8Array(f) }));
      p.resolve({ results, inferenceMs: msg.inferenceMs });
    }
    else p.reject(new InferenceError(msg.message));
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

/**
 * The agent runs as compiled JS, where the worker is the .js file beside this
 * one. Tests run the TypeScript sources; there the worker is booted through
 * tsx (a dev dependency), since a worker does not inherit the test runner's
 * transform.
 */
function spawnWorker(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./inference-worker.js', here), { workerData: init });
  // The ESM build of tsx's API; its CommonJS build cannot be imported from an eval'd worker.
  const tsxApi = new URL('./api/index.mjs', pathToFileURL(createRequire(here).resolve('tsx/esm'))).href;
  const workerUrl = new URL('./inference-worker.ts', here).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl)}); });`;
  return new Worker(boot, { eval: true, workerData: init });
}
