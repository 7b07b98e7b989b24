import onnxProto from 'onnx-proto';
import type { ModelMetadata, ModelMetadataInput, ModelTarget } from '@perch/shared';
import { modelMetadataSchema, modelTargetPath, modelTargetSchema } from '@perch/shared';

const { onnx } = onnxProto;

export interface TinyModel {
  bytes: Buffer;
  metadata: ModelMetadata;
}

export interface TinyModelOptions {
  width?: number;
  height?: number;
  /** the output kind; 'logits' makes the agent apply the softmax */
  kind?: 'probabilities' | 'logits';
  labels?: [string, string, string];
  inputName?: string;
  /** scales the logits: a larger gain gives sharper (more confident) outputs */
  gain?: number;
  /** the batch dimension: fixed (default 1) or dynamic */
  batch?: number | 'dynamic';
  /** NaN weights: a broken model whose every output is NaN */
  nan?: boolean;
  /**
   * Adds log(mean red + 0.45) to every logit, with pixels normalised to
   * -0.5..0.5: a model that loads (the warm-up's zero tensor is mid-grey)
   * and answers the golden input (its channels sit well above black) but
   * gives NaN on dark frames, such as a black camera's: it fails its health
   * window.
   */
  darkFails?: boolean;
}

/**
 * A real ONNX classifier small enough to build from bytes: flatten the NCHW
 * input, Gemm to 3 logits, optional Softmax. Logit k is `gain` times the mean
 * of channel k, so its answer is the frame's dominant colour channel: with
 * labels [red, green, blue] a red frame is 'red'.
 */
export function buildTinyModel(opts: TinyModelOptions = {}): TinyModel {
  const width = opts.width ?? 8;
  const height = opts.height ?? 8;
  const kind = opts.kind ?? 'probabilities';
  const labels = opts.labels ?? ['red', 'green', 'blue'];
  const inputName = opts.inputName ?? 'input';
  const gain = opts.gain ?? 4;
  const batch = opts.batch === 'dynamic' ? 'N' : (opts.batch ?? 1);
  const pixels = width * height;
  const k = 3;
  const w = new Float32Array(3 * pixels * k);
  for (let c = 0; c < 3; c++) for (let p = 0; p < pixels; p++) w[(c * pixels + p) * k + c] = gain / pixels;
  if (opts.nan) w.fill(Number.NaN);
  const outputName = kind === 'logits' ? 'logits' : 'probs';
  const nodes = [
    { opType: 'Flatten', input: [inputName], output: ['flat'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] },
    { opType: 'Gemm', input: ['flat', 'W', 'B'], output: [opts.darkFails ? 'linear' : 'logits'] },
  ];
  const extra = [];
  if (opts.darkFails) {
    const wRed = new Float32Array(3 * pixels);
    wRed.fill(1 / pixels, 0, pixels);
    extra.push(
      { name: 'Wred', dataType: onnx.TensorProto.DataType.FLOAT, dims: [3 * pixels, 1], rawData: new Uint8Array(wRed.buffer) },
      { name: 'Bred', dataType: onnx.TensorProto.DataType.FLOAT, dims: [1], floatData: [0.45] },
    );
    nodes.push(
      { opType: 'Gemm', input: ['flat', 'Wred', 'Bred'], output: ['red'] },
      { opType: 'Log', input: ['red'], output: ['logRed'] },
      { opType: 'Add', input: ['linear', 'logRed'], output: ['logits'] },
    );
  }
  if (kind === 'probabilities') {
    nodes.push({ opType: 'Softmax', input: ['logits'], output: ['probs'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] });
  }
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'perch-agent-tests',
    graph: onnx.GraphProto.create({
      name: 'tiny',
      input: [tensorInfo(inputName, [batch, 3, height, width])],
      output: [tensorInfo(outputName, [batch, k])],
      initializer: [
        { name: 'W', dataType: onnx.TensorProto.DataType.FLOAT, dims: [3 * pixels, k], rawData: new Uint8Array(w.buffer) },
        { name: 'B', dataType: onnx.TensorProto.DataType.FLOAT, dims: [k], floatData: [0, 0, 0] },
        ...extra,
      ],
      node: nodes,
    }),
  });
  const metadataInput: ModelMetadataInput = {
    labels,
    input: { name: inputName, width, height, layout: 'NCHW', channelOrder: 'RGB' },
    normalization: { scale: 1 / 255, mean: opts.darkFails ? [0.5, 0.5, 0.5] : [0, 0, 0], std: [1, 1, 1] },
    output: { name: outputName, kind },
  };
  return { bytes: Buffer.from(onnx.ModelProto.encode(model).finish()), metadata: modelMetadataSchema.parse(metadataInput) };
}

function tensorInfo(name: string, dims: (number | string)[]) {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

/** An rgb24 frame of one colour, 8x8 unless told otherwise: the tiny model names its dominant channel. */
export function solidFrame(r: number, g: number, b: number, width = 8, height = 8): Uint8Array {
  const f = new Uint8Array(width * height * 3);
  for (let i = 0; i < f.length; i += 3) f.set([r, g, b], i);
  return f;
}

/**
 * A model target for a tiny model, as the pipeline takes it (unsigned: the
 * pipeline only reads the metadata and the name; signatures are checked
 * before it, in the deployment).
 */
export function tinyModelTarget(model: TinyModel, version: string): ModelTarget {
  return modelTargetSchema.parse({
    _type: 'model-target',
    spec_version: '1.0',
    version: 1,
    expires: new Date(Date.now() + 3600_000).toISOString(),
    path: modelTargetPath('tiny', version),
    length: model.bytes.length,
    hashes: { sha256: '0'.repeat(64) },
    custom: { name: 'tiny', version, format: 'onnx', metadata: model.metadata, createdAt: new Date().toISOString() },
  });
}
