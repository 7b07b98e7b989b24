/**
 * Multinomial logistic regression trained with mini-batch Adam and L2 weight decay.
 * Small enough to run in plain TypeScript: a few thousand rows of ~1k features.
 */
import { z } from 'zod';
import { createRng } from '../pet-park/prng.js';

const trainOptionsSchema = z.object({
  classes: z.number().int().min(2),
  epochs: z.number().int().min(1).max(10_000).default(30),
  batchSize: z.number().int().min(1).default(64),
  learningRate: z.number().positive().default(0.003),
  l2: z.number().min(0).default(1e-3),
  seed: z.number().int().min(0).default(0),
});

export type TrainOptions = z.input<typeof trainOptionsSchema>;

export interface LinearHead {
  classes: number;
  features: number;
  /** [classes, features] row-major, ready for Gemm with transB = 1. */
  weights: Float32Array;
  bias: Float32Array;
}

/** Softmax over each row of `logits` in place. */
export function softmaxRows(logits: Float64Array, classes: number): void {
  for (let base = 0; base < logits.length; base += classes) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[base + k] ?? 0);
    let sum = 0;
    for (let k = 0; k < classes; k++) {
      const e = Math.exp((logits[base + k] ?? 0) - max);
      logits[base + k] = e;
      sum += e;
    }
    for (let k = 0; k < classes; k++) logits[base + k] = (logits[base + k] ?? 0) / sum;
  }
}

/**
 * @param data   [rows, features] standardised features
 * @param labels class index per row
 */
export function trainSoftmaxRegression(data: Float32Array, labels: Int32Array, features: number, options: TrainOptions): LinearHead {
  const parsed = trainOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`trainSoftmaxRegression: invalid options: ${z.prettifyError(parsed.error)}`);
  const o = parsed.data;
  const rows = labels.length;
  const K = o.classes;
  const D = features;
  if (rows < 1 || data.length !== rows * D) throw new Error(`trainSoftmaxRegression: data has ${data.length} values, expected ${rows}x${D}`);
  for (const label of labels) if (label < 0 || label >= K) throw new Error(`trainSoftmaxRegression: label ${label} outside [0, ${K})`);

  const paramCount = K * D + K; // weights then biases
  const params = new Float64Array(paramCount);
  const grad = new Float64Array(paramCount);
  const m = new Float64Array(paramCount);
  const v = new Float64Array(paramCount);
  const beta1 = 0.9;
  const beta2 = 0.999;
  const eps = 1e-8;
  const rng = createRng(o.seed);
  const order = Int32Array.from({ length: rows }, (_, i) => i);
  const probs = new Float64Array(o.batchSize * K);
  let step = 0;

  for (let epoch = 0; epoch < o.epochs; epoch++) {
    // Fisher-Yates shuffle so batches differ each epoch.
    for (let i = rows - 1; i > 0; i--) {
      const j = rng.int(0, i);
      const tmp = order[i] ?? 0;
      order[i] = order[j] ?? 0;
      order[j] = tmp;
    }
    for (let start = 0; start < rows; start += o.batchSize) {
      const end = Math.min(rows, start + o.batchSize);
      const size = end - start;
      // Forward: logits for the batch.
      for (let bi = 0; bi < size; bi++) {
        const base = (order[start + bi] ?? 0) * D;
        for (let k = 0; k < K; k++) {
          let s = params[K * D + k] ?? 0;
          const wBase = k * D;
          for (let j = 0; j < D; j++) s += (params[wBase + j] ?? 0) * (data[base + j] ?? 0);
          probs[bi * K + k] = s;
        }
      }
      softmaxRows(probs.subarray(0, size * K), K);
      // Backward: d(mean cross-entropy)/d(logits) = (p - onehot) / size, plus L2 on weights.
      for (let i = 0; i < K * D; i++) grad[i] = o.l2 * (params[i] ?? 0);
      for (let k = 0; k < K; k++) grad[K * D + k] = 0;
      for (let bi = 0; bi < size; bi++) {
        const row = order[start + bi] ?? 0;
        const base = row * D;
        const label = labels[row] ?? 0;
        for (let k = 0; k < K; k++) {
          const delta = ((probs[bi * K + k] ?? 0) - (k === label ? 1 : 0)) / size;
          grad[K * D + k] = (grad[K * D + k] ?? 0) + delta;
          const wBase = k * D;
          for (let j = 0; j < D; j++) grad[wBase + j] = (grad[wBase + j] ?? 0) + delta * (data[base + j] ?? 0);
        }
      }
      step++;
      const c1 = 1 - beta1 ** step;
      const c2 = 1 - beta2 ** step;
      for (let i = 0; i < paramCount; i++) {
        const g = grad[i] ?? 0;
        const mi = beta1 * (m[i] ?? 0) + (1 - beta1) * g;
        const vi = beta2 * (v[i] ?? 0) + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = (params[i] ?? 0) - (o.learningRate * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
      }
    }
  }
  return {
    classes: K,
    features: D,
    weights: Float32Array.from(params.subarray(0, K * D)),
    bias: Float32Array.from(params.subarray(K * D)),
  };
}

/** Class probabilities of the head for [rows, features] inputs (same features it was trained on). */
export function predictProbabilities(head: LinearHead, data: Float32Array): Float64Array {
  const rows = data.length / head.features;
  if (!Number.isInteger(rows)) throw new Error(`predictProbabilities: ${data.length} values is not a multiple of ${head.features}`);
  const K = head.classes;
  const D = head.features;
  const out = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) {
      let s = head.bias[k] ?? 0;
      for (let j = 0; j < D; j++) s += (head.weights[k * D + j] ?? 0) * (data[r * D + j] ?? 0);
      out[r * K + k] = s;
    }
  }
  softmaxRows(out, K);
  return out;
}
