import type { InferenceSession } from 'onnxruntime-node';
import { loadOnnxRuntime } from '../native-libraries.js';
import { checkModelIo, type ModelGolden, type ModelMetadata } from '@perch/shared';
import { goldenReference, goldenSeedOf } from './golden-reference.js';

/** A model file that does not match what its metadata promises. */
export class ModelCheckError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'ModelCheckError';
  }
}

/**
 * Loads the ONNX bytes in onnxruntime and checks them against the metadata:
 * input name, rank-4 float32 layout and size, output name and class count,
 * then runs one zero frame through it. Throws ModelCheckError on any mismatch.
 * Returns the model's golden input and output (golden-reference.ts), made
 * while the session is open.
 */
export async function checkOnnxModel(bytes: Uint8Array, meta: ModelMetadata): Promise<ModelGolden> {
  if (bytes.byteLength === 0) throw new ModelCheckError('model file is empty', 'file');
  const ort = await loadOnnxRuntime();
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  } catch (err) {
    throw new ModelCheckError(`not a loadable ONNX model: ${(err as Error).message.split('\n')[0]}`, 'file');
  }
  try {
    const info = (m: InferenceSession.ValueMetadata) => ({ name: m.name, type: m.isTensor ? m.type : undefined, shape: m.isTensor ? m.shape : [] });
    const io = checkModelIo(session.inputMetadata.map(info), session.outputMetadata.map(info), meta);
    if (!io.ok) throw new ModelCheckError(io.error, io.field);
    const { width, height, layout } = meta.input;
    const dims = layout === 'NCHW' ? [1, 3, height, width] : [1, height, width, 3];
    const zeros = new ort.Tensor('float32', new Float32Array(3 * width * height), dims);
    let result: InferenceSession.ReturnType;
    try {
      result = await session.run({ [meta.input.name]: zeros }, [meta.output.name]);
    } catch (err) {
      throw new ModelCheckError(`model fails on a test frame: ${(err as Error).message.split('\n')[0]}`, 'file');
    }
    const out = result[meta.output.name];
    if (!out || out.type !== 'float32' || out.size !== meta.labels.length) {
      throw new ModelCheckError(
        `output "${meta.output.name}" gives ${out ? `${out.size} ${out.type} values` : 'nothing'} per frame, metadata has ${meta.labels.length} labels`,
        'metadata.labels',
      );
    }
    try {
      return await goldenReference(session, meta, goldenSeedOf(bytes));
    } catch (err) {
      throw new ModelCheckError(`model fails on the golden input: ${(err as Error).message.split('\n')[0]}`, 'file');
    }
  } finally {
    await session.release();
  }
}
