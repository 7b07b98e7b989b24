import type { ModelMetadata } from './model-metadata.js';

/** Numerically stable softmax: shifting by the maximum keeps exp() finite. */
export function softmax(logits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(logits.length);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i] as number);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp((logits[i] as number) - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / sum;
  return out;
}

/**
 * The model's output as probabilities, per its metadata's `output.kind`.
 * NaN or infinite outputs throw: a broken frame result must count as an
 * inference error, never as a prediction. Shared so that the registry's
 * golden output and the device's are the same function of the raw output.
 */
export function toProbabilities(output: Float32Array, kind: ModelMetadata['output']['kind']): Float32Array {
  for (let i = 0; i < output.length; i++) {
    if (!Number.isFinite(output[i])) throw new RangeError(`model output ${i} is ${output[i]}: not a finite number`);
  }
  return kind === 'logits' ? softmax(output) : output;
}
