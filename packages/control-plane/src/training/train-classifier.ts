/**
 * End-to-end training of the pet-park classifier, in memory:
 * render train/test sets -> fixed features (onnxruntime) -> softmax head (TypeScript)
 * -> full ONNX model -> held-out evaluation of that exact model.
 */
import { z } from 'zod';
import { mirrorHorizontally } from './augment.js';
import { createSession, runBatched } from './batched-inference.js';
import { buildClassifierModel, buildFeatureModel, FEATURES_OUTPUT_NAME, MODEL_INPUT_NAME, MODEL_OUTPUT_NAME } from './classifier-graph.js';
import { argmaxRows, evaluate, type Evaluation } from './evaluation.js';
import { assertFeatureInputSize, type FeatureExtractorSpec } from './features/feature-extractor.js';
import { featureStats, foldStandardization, standardize } from './head/standardize.js';
import { predictProbabilities, trainSoftmaxRegression } from './head/softmax-regression.js';
import { generateDataset } from './pet-park/dataset.js';
import { PET_PARK_LABELS } from './pet-park/labels.js';
import { deriveSeed } from './pet-park/prng.js';
import { DEFAULT_NORMALIZATION, type Normalization } from './preprocess.js';

const trainClassifierOptionsSchema = z.object({
  seed: z.number().int().min(0).max(0xffffffff).default(1),
  /** Rendered training scenes; mirroring doubles the rows the head is trained on. */
  trainCount: z.number().int().min(30).max(100_000).default(1800),
  testCount: z.number().int().min(3).max(100_000).default(600),
  width: z.number().int().default(64),
  height: z.number().int().default(64),
  epochs: z.number().int().min(1).max(1000).default(15),
  l2: z.number().min(0).default(1e-3),
  learningRate: z.number().positive().default(0.003),
  channels: z.tuple([z.number().int().min(1).max(256), z.number().int().min(1).max(512)]).optional(),
});

export type TrainClassifierOptions = z.input<typeof trainClassifierOptionsSchema>;
export type ResolvedTrainClassifierOptions = z.output<typeof trainClassifierOptionsSchema>;

export function resolveTrainClassifierOptions(options: TrainClassifierOptions): ResolvedTrainClassifierOptions {
  const parsed = trainClassifierOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`pet-park classifier: invalid options: ${z.prettifyError(parsed.error)}`);
  assertFeatureInputSize(parsed.data.width, parsed.data.height);
  return parsed.data;
}

/** Held-out images come from a seed derived from, but different to, the training seed. */
export function testSeedFor(seed: number): number {
  return deriveSeed(seed, 0x7e57);
}

export interface TrainedClassifier {
  model: Uint8Array;
  normalization: Normalization;
  featureCount: number;
  /** Accuracy of the head on its own (mirrored-augmented) training rows. */
  trainAccuracy: number;
  heldOut: Evaluation;
  testSeed: number;
  timingsMs: { render: number; features: number; train: number; evaluate: number };
}

export async function trainClassifier(options: TrainClassifierOptions): Promise<TrainedClassifier> {
  const o = resolveTrainClassifierOptions(options);
  const normalization = DEFAULT_NORMALIZATION;
  const size = { width: o.width, height: o.height };
  const spec: FeatureExtractorSpec = { seed: o.seed, ...size, ...(o.channels ? { channels: o.channels } : {}) };
  const classes = PET_PARK_LABELS.length;
  const testSeed = testSeedFor(o.seed);
  const runOptions = { ...size, normalization, inputName: MODEL_INPUT_NAME };

  let t = performance.now();
  const lap = (): number => {
    const now = performance.now();
    const elapsed = now - t;
    t = now;
    return Math.round(elapsed);
  };

  const train = await generateDataset({ count: o.trainCount, seed: o.seed, ...size });
  const test = await generateDataset({ count: o.testCount, seed: testSeed, ...size });
  const trainImages = [...train.map((s) => s.image), ...train.map((s) => mirrorHorizontally(s.image))];
  const trainLabels = Int32Array.from([...train, ...train], (s) => s.labelIndex);
  const render = lap();

  const featureModel = buildFeatureModel(spec);
  const featureSession = await createSession(featureModel.model);
  const trainFeatures = await runBatched(featureSession, trainImages, { ...runOptions, outputName: FEATURES_OUTPUT_NAME });
  await featureSession.release();
  const featureTime = lap();

  const stats = featureStats(trainFeatures.data, trainImages.length, trainFeatures.columns);
  const standardized = standardize(trainFeatures.data, trainFeatures.columns, stats);
  const head = trainSoftmaxRegression(standardized, trainLabels, trainFeatures.columns, {
    classes,
    epochs: o.epochs,
    l2: o.l2,
    learningRate: o.learningRate,
    seed: o.seed,
  });
  const trainAccuracy = evaluate(argmaxRows(predictProbabilities(head, standardized), classes), trainLabels, classes).accuracy;
  const folded = foldStandardization(head.weights, head.bias, classes, stats);
  const model = buildClassifierModel(spec, { ...head, ...folded }, {
    labels: JSON.stringify(PET_PARK_LABELS),
    normalization: JSON.stringify(normalization),
  });
  const trainTime = lap();

  // Evaluate the serialised model itself, so the reported figure is what deployments get.
  const session = await createSession(model);
  const testProbs = await runBatched(session, test.map((s) => s.image), { ...runOptions, outputName: MODEL_OUTPUT_NAME });
  await session.release();
  const heldOut = evaluate(argmaxRows(testProbs.data, classes), Int32Array.from(test, (s) => s.labelIndex), classes);
  const evaluateTime = lap();

  return {
    model,
    normalization,
    featureCount: featureModel.featureCount,
    trainAccuracy,
    heldOut,
    testSeed,
    timingsMs: { render, features: featureTime, train: trainTime, evaluate: evaluateTime },
  };
}
