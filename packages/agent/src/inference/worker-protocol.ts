import type { ModelMetadata } from '@perch/shared';

/** Messages between the main thread and one inference worker. */
export interface WorkerInit {
  modelPath: string;
  metadata: ModelMetadata;
  intraOpThreads: number;
  allowSpinning: boolean;
  /** the most frames one run may carry; used only when the model's batch dimension is dynamic */
  maxBatch: number;
  /** 'auto': batches only if the worker measures that a batch costs less per frame than single frames (see BatchCalibration) */
  batching: BatchingPolicy;
}

export type BatchingPolicy = 'auto' | 'always';

/** What a batch of `batch` frames and a single frame cost this model on this box, per frame (ms, best of a few runs at load). */
export interface BatchCalibration {
  batch: number;
  singleMs: number;
  batchPerFrameMs: number;
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
  /** maxBatch: the frames a run may carry from now on; 1 when batching was measured not to pay */
  | { type: 'ready'; inputNames: string[]; outputNames: string[]; maxBatch: number; calibration?: BatchCalibration }
  | { type: 'load-error'; message: string }
  /** startedAt is an absolute time (timeOrigin + now): the worker's clock has its own origin */
  | { type: 'result'; id: number; probabilities: Float32Array; startedAt: number; inferenceMs: number; input: ArrayBuffer }
  | { type: 'run-error'; id: number; message: string; input: ArrayBuffer };
