import type { ModelMetadata } from '@perch/shared';

/** Messages between the main thread and one inference worker. */
export interface WorkerInit {
  modelPath: string;
  metadata: ModelMetadata;
  intraOpThreads: number;
  allowSpinning: boolean;
  /** the most frames one run may carry; used only when the model's batch dimension is dynamic */
  maxBatch: number;
}

/**
 * `input` holds `frames` preprocessed frames back to back, in the model's
 * layout; it moves to the worker and comes back with the result for reuse.
 */
export type ToWorker =
  | { type: 'run'; id: number; frames: number; input: ArrayBuffer }
  /** finish the runs already handed over, release the session, and end the thread */
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; inputNames: string[]; outputNames: string[]; maxBatch: number }
  | { type: 'load-error'; message: string }
  /** startedAt is an absolute time (timeOrigin + now): the worker's clock has its own origin */
  | { type: 'result'; id: number; probabilities: Float32Array; startedAt: number; inferenceMs: number; input: ArrayBuffer }
  | { type: 'run-error'; id: number; message: string; input: ArrayBuffer };
