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

export type ToWorker = { type: 'run'; id: number; frames: ArrayBuffer[] };

export type FromWorker =
  | { type: 'ready'; inputNames: string[]; outputNames: string[]; maxBatch: number }
  | { type: 'load-error'; message: string }
  | { type: 'result'; id: number; probabilities: Float32Array; inferenceMs: number; frames: ArrayBuffer[] }
  | { type: 'run-error'; id: number; message: string };
