import { agentSessionOptions } from '@perch/agent';
import { floatTensor, int64Tensor, intAttr, mulberry32 } from '@perch/control-plane';
import { createPreprocessor, goldenFrame, inputDims, modelMetadataSchema, type ModelMetadataInput } from '@perch/shared';
import * as ort from 'onnxruntime-node';
import onnxProto, { type onnx as onnxTypes } from 'onnx-proto';

const { onnx } = onnxProto;
type ModelProto = onnxTypes.IModelProto;
type NodeProto = onnxTypes.INodeProto;
type TensorProto = onnxTypes.ITensorProto;
type AttributeProto = onnxTypes.IAttributeProto;

/**
 * Bad versions of a real classifier for rollout tests, each made by editing
 * its ONNX graph (the same file format the registry and the agents load):
 * the same input and output, so the registry accepts each one, and a fault
 * that only shows where the model runs. The classifier must end in a
 * Softmax that makes its declared output from logits.
 */

function decode(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

function encode(m: ModelProto, producerVersion: string): Buffer {
  m.producerVersion = producerVersion;
  return Buffer.from(onnx.ModelProto.encode(m).finish());
}

/** The graph's Softmax that makes `output`, and the logits it reads. */
function softmaxOf(m: ModelProto, output: string): { node: NodeProto; logits: string } {
  const node = m.graph?.node?.find((n) => n.opType === 'Softmax' && n.output?.[0] === output);
  const logits = node?.input?.[0];
  if (!node || !logits) throw new Error(`no Softmax makes "${output}"`);
  return { node, logits };
}

/** Puts `extra` just before the Softmax that makes `output` and feeds it `newLogits` instead. */
function spliceBeforeSoftmax(m: ModelProto, output: string, extra: NodeProto[], newLogits: string, initializers: TensorProto[] = []): void {
  const graph = m.graph;
  if (!graph?.node) throw new Error('model has no graph');
  const { node } = softmaxOf(m, output);
  const at = graph.node.indexOf(node);
  graph.node.splice(at, 0, ...extra);
  node.input = [newLogits, ...(node.input ?? []).slice(1)];
  graph.initializer = [...(graph.initializer ?? []), ...initializers];
}

const nodeOf = (opType: string, name: string, input: string[], output: string, attribute: AttributeProto[] = []): NodeProto => ({ opType, name, input, output: [output], attribute });

/**
 * Loads anywhere, but its answer for the golden frame is never the same
 * twice: uniform noise (RandomUniformLike, unseeded) is added to its logits.
 * The registry records one answer at registration; a device that loads it
 * gets another one from its golden check and refuses the model.
 */
export function unstableModel(bytes: Uint8Array, output: string): Buffer {
  const m = decode(bytes);
  const { logits } = softmaxOf(m, output);
  const high: AttributeProto = { name: 'high', type: onnx.AttributeProto.AttributeType.FLOAT, f: 4 };
  const noise = nodeOf('RandomUniformLike', 'unstable_noise', [logits], 'unstable_noise_out', [high]);
  const sum = nodeOf('Add', 'unstable_add', [logits, 'unstable_noise_out'], 'unstable_logits');
  spliceBeforeSoftmax(m, output, [noise, sum], 'unstable_logits');
  return encode(m, 'unstable');
}

/**
 * The same predictions for every frame: the head that makes the logits
 * (the Gemm the Softmax reads) gets zero weights and a bias that puts
 * class `labelIndex` first, so the output no longer depends on the input.
 */
export function constantModel(bytes: Uint8Array, output: string, labelIndex: number, classes: number): Buffer {
  const m = decode(bytes);
  const { logits } = softmaxOf(m, output);
  const head = m.graph?.node?.find((n) => n.output?.[0] === logits);
  if (head?.opType !== 'Gemm' || !head.input || head.input.length < 3) throw new Error('the logits are not made by a Gemm with a bias');
  const [, weightName, biasName] = head.input;
  const inits = m.graph?.initializer ?? [];
  const weight = inits.find((t) => t.name === weightName);
  const bias = inits.find((t) => t.name === biasName);
  if (!weight?.rawData || !bias) throw new Error('the head has no stored weights');
  weight.rawData = new Uint8Array(weight.rawData.length);
  const b = new Float32Array(classes);
  b[labelIndex] = 10;
  const fresh = floatTensor(biasName as string, [classes], b);
  bias.rawData = fresh.rawData as Uint8Array;
  bias.floatData = [];
  return encode(m, `constant-${labelIndex}`);
}

export interface DeadBranch {
  /** the input's values cut into rows of this many */
  width: number;
  /** Gemm (width x width, one shared weight) and Tanh, this many times */
  depth: number;
}

/**
 * The same predictions at a higher cost: a dead branch that reads the
 * input (cut into rows of `width`), runs it through `depth` dense layers,
 * sums the result, multiplies it by zero and adds that to the logits. The
 * weights are one shared width x width matrix, so the file grows little.
 */
export function slowedModel(bytes: Uint8Array, output: string, input: string, branch: DeadBranch): Buffer {
  const m = decode(bytes);
  const { logits } = softmaxOf(m, output);
  const { width, depth } = branch;
  const next = mulberry32(97);
  const w = Float32Array.from({ length: width * width }, () => ((next() * 2 - 1) * 2) / Math.sqrt(width));
  const inits = [
    int64Tensor('dead_rows_shape', [2], [-1, width]),
    floatTensor('dead_weight', [width, width], w),
    floatTensor('dead_bias', [width], new Float32Array(width)),
    floatTensor('dead_zero', [], Float32Array.of(0)),
  ];
  const nodes = [nodeOf('Reshape', 'dead_rows', [input, 'dead_rows_shape'], 'dead_x0')];
  let x = 'dead_x0';
  for (let i = 1; i <= depth; i++) {
    nodes.push(nodeOf('Gemm', `dead_gemm_${i}`, [x, 'dead_weight', 'dead_bias'], `dead_g${i}`));
    // Tanh keeps every value finite however deep the chain: zero times it stays zero.
    nodes.push(nodeOf('Tanh', `dead_tanh_${i}`, [`dead_g${i}`], `dead_x${i}`));
    x = `dead_x${i}`;
  }
  nodes.push(nodeOf('ReduceSum', 'dead_sum', [x], 'dead_total', [intAttr('keepdims', 0)]));
  nodes.push(nodeOf('Mul', 'dead_times_zero', ['dead_total', 'dead_zero'], 'dead_nothing'));
  nodes.push(nodeOf('Add', 'dead_add', [logits, 'dead_nothing'], 'dead_logits'));
  spliceBeforeSoftmax(m, output, nodes, 'dead_logits', inits);
  return encode(m, `slowed-${width}x${depth}`);
}

/**
 * How many times slower `slow` runs than `base` in bare onnxruntime, with
 * the agent's session options, on golden frames: the two sessions take
 * turns, run for run, so both see the same load on the machine; the ratio
 * of their median run times, and the base's median (ms).
 */
export async function bareSlowdown(base: Uint8Array, slow: Uint8Array, metadata: ModelMetadataInput, runs = 60): Promise<{ ratio: number; baseMs: number }> {
  const meta = modelMetadataSchema.parse(metadata);
  const pre = createPreprocessor(meta);
  const feeds = Array.from({ length: 8 }, (_, i) => ({ [meta.input.name]: new ort.Tensor('float32', pre(goldenFrame(1000 + i, meta.input.width, meta.input.height)), inputDims(meta)) }));
  const sessions = [await ort.InferenceSession.create(base, agentSessionOptions(1)), await ort.InferenceSession.create(slow, agentSessionOptions(1))] as const;
  try {
    const times: [number[], number[]] = [[], []];
    for (let i = -feeds.length; i < runs; i++) {
      for (const k of [0, 1] as const) {
        const t = performance.now();
        await sessions[k].run(feeds[(i + feeds.length) % feeds.length] as Record<string, ort.Tensor>);
        // The first runs warm each session up.
        if (i >= 0) times[k].push(performance.now() - t);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    return { ratio: median(times[1]) / median(times[0]), baseMs: median(times[0]) };
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}
