import * as ort from 'onnxruntime-node';
import type { ModelMetadata } from '@perch/shared';

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

function describeShape(shape: ReadonlyArray<number | string>): string {
  return `[${shape.join(', ')}]`;
}

function dimMatches(dim: number | string | undefined, want: number): boolean {
  // Symbolic (string) and -1 dims are dynamic and accept any size.
  return typeof dim === 'string' || dim === -1 || dim === want;
}

/**
 * Loads the ONNX bytes in onnxruntime and checks them against the metadata:
 * input name, rank-4 float32 layout and size, output name and class count,
 * then runs one zero frame through it. Throws ModelCheckError on any mismatch.
 */
export async function checkOnnxModel(bytes: Uint8Array, meta: ModelMetadata): Promise<void> {
  if (bytes.byteLength === 0) throw new ModelCheckError('model file is empty', 'file');
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  } catch (err) {
    throw new ModelCheckError(`not a loadable ONNX model: ${(err as Error).message.split('\n')[0]}`, 'file');
  }
  try {
    const input = session.inputMetadata.find((m) => m.name === meta.input.name);
    if (!input) {
      throw new ModelCheckError(`model has no input "${meta.input.name}" (inputs: ${session.inputNames.join(', ')})`, 'metadata.input.name');
    }
    if (!input.isTensor || input.type !== 'float32' || input.shape.length !== 4) {
      const shape = input.isTensor ? `${input.type} ${describeShape(input.shape)}` : 'not a tensor';
      throw new ModelCheckError(`input "${input.name}" must be a float32 tensor of rank 4, is ${shape}`, 'metadata.input');
    }
    const { width, height, layout } = meta.input;
    const [, d1, d2, d3] = input.shape;
    const ok = layout === 'NCHW'
      ? dimMatches(d1, 3) && dimMatches(d2, height) && dimMatches(d3, width)
      : dimMatches(d1, height) && dimMatches(d2, width) && dimMatches(d3, 3);
    if (!ok) {
      const want = layout === 'NCHW' ? `[N, 3, ${height}, ${width}]` : `[N, ${height}, ${width}, 3]`;
      throw new ModelCheckError(`input "${input.name}" has shape ${describeShape(input.shape)}, metadata says ${layout} ${want}`, 'metadata.input');
    }
    const output = session.outputMetadata.find((m) => m.name === meta.output.name);
    if (!output) {
      throw new ModelCheckError(`model has no output "${meta.output.name}" (outputs: ${session.outputNames.join(', ')})`, 'metadata.output.name');
    }
    const dims = layout === 'NCHW' ? [1, 3, height, width] : [1, height, width, 3];
    const zeros = new ort.Tensor('float32', new Float32Array(3 * width * height), dims);
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await session.run({ [input.name]: zeros }, [output.name]);
    } catch (err) {
      throw new ModelCheckError(`model fails on a test frame: ${(err as Error).message.split('\n')[0]}`, 'file');
    }
    const out = result[output.name];
    if (!out || out.type !== 'float32' || out.size !== meta.labels.length) {
      throw new ModelCheckError(
        `output "${meta.output.name}" gives ${out ? `${out.size} ${out.type} values` : 'nothing'} per frame, metadata has ${meta.labels.length} labels`,
        'metadata.labels',
      );
    }
  } finally {
    await session.release();
  }
}
