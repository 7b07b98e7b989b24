/**
 * The two ONNX models of the training pipeline: the feature extractor alone (used to
 * compute training features) and the deployable classifier (features -> Gemm -> Softmax).
 * Both share the extractor weights because they are generated from the same seed.
 */
import { addFeatureExtractor, type FeatureExtractorSpec } from './features/feature-extractor.js';
import type { LinearHead } from './head/softmax-regression.js';
import { GraphBuilder } from './onnx-graph/graph-builder.js';
import { encodeModel } from './onnx-graph/model.js';
import { gemm, softmax } from './onnx-graph/ops.js';
import { floatValueInfo } from './onnx-graph/value-info.js';

export const MODEL_INPUT_NAME = 'input';
export const MODEL_OUTPUT_NAME = 'probabilities';
export const FEATURES_OUTPUT_NAME = 'features';
/** Symbolic batch dimension, so callers can send any number of frames per run. */
const BATCH_DIM = 'N';
const PRODUCER = { producerName: 'perch-training', producerVersion: '1.0.0' };

function startGraph(name: string, spec: FeatureExtractorSpec): GraphBuilder {
  const g = new GraphBuilder(name);
  g.addInput(floatValueInfo(MODEL_INPUT_NAME, [BATCH_DIM, 3, spec.height, spec.width]));
  return g;
}

export function buildFeatureModel(spec: FeatureExtractorSpec): { model: Uint8Array; featureCount: number } {
  const g = startGraph('pet-park-features', spec);
  const { output, featureCount } = addFeatureExtractor(g, MODEL_INPUT_NAME, spec, FEATURES_OUTPUT_NAME);
  g.addOutput(floatValueInfo(output, [BATCH_DIM, featureCount]));
  return { model: encodeModel(g, PRODUCER), featureCount };
}

export function buildClassifierModel(spec: FeatureExtractorSpec, head: LinearHead, metadata: Record<string, string> = {}): Uint8Array {
  const g = startGraph('pet-park-classifier', spec);
  const { output: features, featureCount } = addFeatureExtractor(g, MODEL_INPUT_NAME, spec);
  if (featureCount !== head.features) {
    throw new Error(`buildClassifierModel: head expects ${head.features} features, extractor gives ${featureCount}`);
  }
  const logits = gemm(g, features, {
    weights: head.weights,
    bias: head.bias,
    inFeatures: head.features,
    outFeatures: head.classes,
    name: 'head',
  });
  softmax(g, logits, 1, MODEL_OUTPUT_NAME);
  g.addOutput(floatValueInfo(MODEL_OUTPUT_NAME, [BATCH_DIM, head.classes]));
  return encodeModel(g, { ...PRODUCER, docString: 'Pet-park classifier: fixed convolutional features and a trained softmax head.', metadata });
}
