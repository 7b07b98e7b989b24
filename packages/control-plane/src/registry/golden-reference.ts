import { createHash } from 'node:crypto';
import type { InferenceSession } from 'onnxruntime-node';
import { loadOnnxRuntime } from '../native-libraries.js';
import {
  createPreprocessor,
  DEFAULT_GOLDEN_TOLERANCE,
  GOLDEN_PATTERN,
  goldenFrame,
  inputDims,
  toProbabilities,
  type ModelGolden,
  type ModelMetadata,
} from '@perch/shared';

/** The golden frame's seed, from the model's bytes: registering the same file again gives the same target. */
export function goldenSeedOf(bytes: Uint8Array): number {
  return createHash('sha256').update(bytes).digest().readUInt32BE(0);
}

/**
 * The model's answer for its golden frame, as a device computes it: the
 * frame made from the seed, the device's own preprocessing and, for logits,
 * its softmax (both from @perch/shared). Devices run the same frame in a
 * new model before switching to it and compare. Throws when the model gives
 * no finite output for the frame.
 */
export async function goldenReference(session: InferenceSession, meta: ModelMetadata, seed: number): Promise<ModelGolden> {
  const ort = await loadOnnxRuntime();
  const { width, height } = meta.input;
  const input = createPreprocessor(meta)(goldenFrame(seed, width, height));
  const result = await session.run({ [meta.input.name]: new ort.Tensor('float32', input, inputDims(meta)) }, [meta.output.name]);
  const out = result[meta.output.name];
  if (!out || out.type !== 'float32') throw new Error(`output "${meta.output.name}" is ${out?.type ?? 'missing'} on the golden input`);
  const probabilities = toProbabilities(out.data as Float32Array, meta.output.kind);
  return { frame: { pattern: GOLDEN_PATTERN, seed }, probabilities: Array.from(probabilities), tolerance: DEFAULT_GOLDEN_TOLERANCE };
}
