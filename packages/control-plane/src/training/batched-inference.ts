/** Runs an image model over many images in fixed-size batches with onnxruntime-node. */
import type { InferenceSession } from 'onnxruntime-node';
import { loadOnnxRuntime } from '../native-libraries.js';
import type { RgbImage } from './pet-park/rgb-image.js';
import { imagesToNchw, type Normalization } from './preprocess.js';

/**
 * Session tuned for a small shared box: a fixed thread count, and no busy-waiting
 * threads between batches so rendering and training on the same cores aren't starved.
 */
export async function createSession(model: Uint8Array, threads = 2): Promise<InferenceSession> {
  const ort = await loadOnnxRuntime();
  return ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
}

export interface BatchedRunOptions {
  inputName: string;
  outputName: string;
  width: number;
  height: number;
  normalization: Normalization;
  batchSize?: number;
}

/** Returns the outputs of all images stacked row-wise: [images.length, columns]. */
export async function runBatched(
  session: InferenceSession,
  images: readonly RgbImage[],
  o: BatchedRunOptions,
): Promise<{ data: Float32Array; columns: number }> {
  const ort = await loadOnnxRuntime();
  const batchSize = o.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`runBatched: batchSize must be a positive integer, got ${batchSize}`);
  let out: Float32Array | undefined;
  let columns = 0;
  for (let start = 0; start < images.length; start += batchSize) {
    const batch = images.slice(start, start + batchSize);
    const input = new ort.Tensor('float32', imagesToNchw(batch, o.width, o.height, o.normalization), [batch.length, 3, o.height, o.width]);
    const result = await session.run({ [o.inputName]: input });
    const tensor = result[o.outputName];
    if (!tensor || tensor.type !== 'float32') throw new Error(`runBatched: model produced no float32 output "${o.outputName}"`);
    const values = tensor.data as Float32Array;
    if (out === undefined) {
      columns = values.length / batch.length;
      out = new Float32Array(images.length * columns);
    }
    out.set(values, start * columns);
    input.dispose();
    tensor.dispose();
  }
  return { data: out ?? new Float32Array(0), columns };
}
