import { createPreprocessor, DEFAULT_GOLDEN_TOLERANCE, GOLDEN_PATTERN, goldenFrame, inputDims, toProbabilities, type ModelGolden, type ModelMetadata } from '@perch/shared';
import { InferenceSession, Tensor } from 'onnxruntime-node';

/**
 * A model's golden input and output, computed here as the registry does
 * (onnxruntime on the seeded frame, the shared preprocessing and softmax),
 * for targets the control plane double signs.
 */
export async function goldenOf(bytes: Uint8Array, meta: ModelMetadata, seed = 1): Promise<ModelGolden> {
  const session = await InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const input = createPreprocessor(meta)(goldenFrame(seed, meta.input.width, meta.input.height));
    const out = (await session.run({ [meta.input.name]: new Tensor('float32', input, inputDims(meta)) }))[meta.output.name];
    if (!out || out.type !== 'float32') throw new Error(`no float32 output ${meta.output.name}`);
    const probabilities = Array.from(toProbabilities(out.data as Float32Array, meta.output.kind));
    return { frame: { pattern: GOLDEN_PATTERN, seed }, probabilities, tolerance: DEFAULT_GOLDEN_TOLERANCE };
  } finally {
    await session.release();
  }
}
