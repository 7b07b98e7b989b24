/**
 * Builds the demo's pet-park classifier into a directory, or reuses what is there.
 * The demo calls this on every start, so a matching earlier build (same cache key,
 * intact model file) returns immediately.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { MODEL_INPUT_NAME, MODEL_OUTPUT_NAME } from './classifier-graph.js';
import { trainedModelFileSchema, type TrainedModelFile } from './model-metadata.js';
import { PET_PARK_LABELS } from './pet-park/labels.js';
import { resolveTrainClassifierOptions, trainClassifier } from './train-classifier.js';

export const DEMO_MODEL_NAME = 'pet-park-classifier';
export const DEMO_MODEL_VERSION = '1.0.0';
/**
 * Bump whenever the renderer, feature extractor or training changes behaviour, so
 * existing caches are rebuilt rather than trusted.
 */
export const TRAINING_RECIPE = 'pet-park-recipe-1';

const buildDemoModelOptionsSchema = z.object({
  outDir: z.string().min(1),
  seed: z.number().int().min(0).max(0xffffffff).default(1),
  trainCount: z.number().int().min(30).max(100_000).default(1800),
  testCount: z.number().int().min(3).max(100_000).default(600),
  width: z.number().int().default(64),
  height: z.number().int().default(64),
  /** Rebuild even if a matching model exists. */
  force: z.boolean().default(false),
});

export type BuildDemoModelOptions = z.input<typeof buildDemoModelOptionsSchema>;

export interface DemoModel {
  modelPath: string;
  metadataPath: string;
  metadata: TrainedModelFile;
  /** True when existing files were reused. */
  cached: boolean;
}

const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

async function readCached(modelPath: string, metadataPath: string, cacheKey: string): Promise<TrainedModelFile | null> {
  try {
    const parsed = trainedModelFileSchema.safeParse(JSON.parse(await readFile(metadataPath, 'utf8')));
    if (!parsed.success || parsed.data.training.cacheKey !== cacheKey) return null;
    const model = await readFile(modelPath);
    return sha256(model) === parsed.data.training.modelSha256 ? parsed.data : null;
  } catch {
    // Missing or unreadable files simply mean "build it".
    return null;
  }
}

/** Writes via a temporary name and a rename, so a crash never leaves a half-written file. */
async function writeAtomically(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export async function buildDemoModel(options: BuildDemoModelOptions): Promise<DemoModel> {
  const parsed = buildDemoModelOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`buildDemoModel: invalid options: ${z.prettifyError(parsed.error)}`);
  const o = parsed.data;
  const training = resolveTrainClassifierOptions({ seed: o.seed, trainCount: o.trainCount, testCount: o.testCount, width: o.width, height: o.height });
  const outDir = path.resolve(o.outDir);
  const modelPath = path.join(outDir, `${DEMO_MODEL_NAME}.onnx`);
  const metadataPath = path.join(outDir, `${DEMO_MODEL_NAME}.json`);
  const cacheKey = sha256(JSON.stringify({ recipe: TRAINING_RECIPE, version: DEMO_MODEL_VERSION, training })).slice(0, 32);

  if (!o.force) {
    const cached = await readCached(modelPath, metadataPath, cacheKey);
    if (cached) return { modelPath, metadataPath, metadata: cached, cached: true };
  }

  const started = performance.now();
  const trained = await trainClassifier(training);
  const metadata: TrainedModelFile = {
    name: DEMO_MODEL_NAME,
    version: DEMO_MODEL_VERSION,
    labels: [...PET_PARK_LABELS],
    input: { name: MODEL_INPUT_NAME, width: training.width, height: training.height, layout: 'NCHW', channelOrder: 'RGB', resize: 'stretch' },
    normalization: { scale: trained.normalization.scale, mean: [...trained.normalization.mean], std: [...trained.normalization.std] },
    output: { name: MODEL_OUTPUT_NAME, kind: 'probabilities' },
    training: {
      seed: training.seed,
      testSeed: trained.testSeed,
      trainCount: training.trainCount,
      testCount: training.testCount,
      heldOutAccuracy: trained.heldOut.accuracy,
      confusion: trained.heldOut.confusion,
      trainAccuracy: trained.trainAccuracy,
      featureCount: trained.featureCount,
      durationMs: Math.round(performance.now() - started),
      cacheKey,
      modelSha256: sha256(trained.model),
    },
  };
  await mkdir(outDir, { recursive: true });
  // Model first: the metadata is what marks a build as complete.
  await writeAtomically(modelPath, trained.model);
  await writeAtomically(metadataPath, `${JSON.stringify(metadata, null, 2)}\n`);
  return { modelPath, metadataPath, metadata, cached: false };
}
