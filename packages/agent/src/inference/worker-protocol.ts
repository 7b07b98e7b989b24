import type { ModelMetadata } from '@perch/shared';

/** Messages between the main thread and one inference worker. */
export interface WorkerInit {
  modelPath: string;
  metadata: ModelMetadata;
  intraOpThreads: number;
}

export type ToWorker = { type: 'run'; id: number; frame: ArrayBuffer };

export type FromWorker =
  | { type: 'ready'; inputNames: string[]; outputNames: string[] }
  | { type: 'load-error'; message: string }
  | { type: 'result'; id: number; probabilities: Float32Array; inferenceMs: number; frame: ArrayBuffer }
  | { type: 'run-error'; id: number; message: string };
