import { modelMetadataSchema } from '@perch/shared';
import type { ModelRegistry } from '../../registry/model-registry.js';
import type { ModelVersionRecord } from '../../store/model-version-store.js';
import { mulberry32 } from '../../training/pet-park/prng.js';
import { GraphBuilder } from '../../training/onnx-graph/graph-builder.js';
import { encodeModel } from '../../training/onnx-graph/model.js';
import { flatten, gemm, softmax } from '../../training/onnx-graph/ops.js';
import { floatValueInfo } from '../../training/onnx-graph/value-info.js';

const SIDE = 8;
export const TINY_LABELS = ['cat', 'dog', 'empty'] as const;

/** A real ONNX classifier of a few hundred bytes (flatten, dense, softmax); `seed` makes another version with other weights. */
export function tinyClassifier(seed: number): Uint8Array {
  const inFeatures = 3 * SIDE * SIDE;
  const g = new GraphBuilder('tiny-classifier');
  const input = g.addInput(floatValueInfo('input', [1, 3, SIDE, SIDE]));
  const next = mulberry32(seed);
  const weights = Float32Array.from({ length: inFeatures * 3 }, () => (next() * 2 - 1) * 0.1);
  const x = gemm(g, flatten(g, input), { name: 'head', weights, bias: new Float32Array(3), inFeatures, outFeatures: 3 });
  softmax(g, x, 1, 'probs');
  g.addOutput(floatValueInfo('probs', [1, 3]));
  return encodeModel(g, { producerName: 'perch-tests', producerVersion: String(seed) });
}

export const tinyMetadata = modelMetadataSchema.parse({
  labels: [...TINY_LABELS],
  input: { name: 'input', width: SIDE, height: SIDE, layout: 'NCHW', channelOrder: 'RGB' },
  normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
  output: { name: 'probs', kind: 'probabilities' },
});

/** Registers `name` `version` (a tiny classifier with weights from `seed`) through the registry, as an upload does. */
export function registerTiny(registry: ModelRegistry, name: string, version: string, seed: number): Promise<ModelVersionRecord> {
  return registry.register(name, version, tinyMetadata, tinyClassifier(seed));
}
