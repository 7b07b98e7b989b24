import { encodeModel, flatten, floatValueInfo, gemm, GraphBuilder, mulberry32, softmax } from '@perch/control-plane';
import type { ModelMetadataInput } from '@perch/shared';

export interface BackboneModelOptions {
  /** input side in pixels (square, 3 channels) */
  side?: number;
  /** width of the backbone layer: its weights are side x side x 3 x hidden floats, nearly all of the file */
  hidden?: number;
  /** seed of the backbone weights */
  seed?: number;
  /** seed of the classifier head: a new one is a head-only fine-tune of the same backbone */
  headSeed?: number;
}

export interface BackboneModel {
  bytes: Buffer;
  metadata: ModelMetadataInput;
}

/**
 * A real ONNX classifier whose size is set by its backbone: flatten, a
 * dense backbone layer with seeded random weights, ReLU, a small dense head
 * to 3 classes, softmax. Random weights are what real weights look like to
 * a chunker (no runs of zeros to deduplicate). Two models with the same
 * `seed` and different `headSeed` differ only in the head's initializers,
 * as a fine-tune of the last layer does.
 */
export function buildBackboneModel(opts: BackboneModelOptions = {}): BackboneModel {
  const side = opts.side ?? 32;
  const hidden = opts.hidden ?? 256;
  const inFeatures = 3 * side * side;
  const g = new GraphBuilder('backbone-classifier');
  const input = g.addInput(floatValueInfo('input', [1, 3, side, side]));
  const backbone = randomFloats(inFeatures * hidden, opts.seed ?? 1, 1 / Math.sqrt(inFeatures));
  let x = flatten(g, input);
  x = gemm(g, x, { name: 'backbone', weights: backbone, bias: new Float32Array(hidden), inFeatures, outFeatures: hidden });
  x = g.node('Relu', [x]);
  const head = randomFloats(hidden * 3, opts.headSeed ?? 2, 1 / Math.sqrt(hidden));
  x = gemm(g, x, { name: 'head', weights: head, bias: new Float32Array(3), inFeatures: hidden, outFeatures: 3 });
  softmax(g, x, 1, 'probs');
  g.addOutput(floatValueInfo('probs', [1, 3]));
  const bytes = Buffer.from(encodeModel(g, { producerName: 'perch-tests', producerVersion: '1' }));
  return {
    bytes,
    metadata: {
      labels: ['red', 'green', 'blue'],
      input: { name: 'input', width: side, height: side, layout: 'NCHW', channelOrder: 'RGB' },
      normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
      output: { name: 'probs', kind: 'probabilities' },
    },
  };
}

function randomFloats(n: number, seed: number, scale: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}
