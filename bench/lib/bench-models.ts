/**
 * The models the benchmarks run, built here with nothing downloaded:
 * MobileNetV2 at 224x224 exported by PyTorch with random weights (the size
 * of a real camera classifier; weights do not change its cost) and the
 * project's small demo classifier.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { buildDemoModel } from '@perch/control-plane';
import { modelMetadataSchema, type ModelMetadata, type ModelMetadataInput } from '@perch/shared';
import { torchvisionModel } from '../../test/support/torchvision-models.js';

export interface BenchModel {
  /** registry name and version when the benchmark registers it */
  name: string;
  version: string;
  modelPath: string;
  /** as the agent reads it (defaults filled) */
  metadata: ModelMetadata;
  /** as uploaded to the registry */
  metadataInput: ModelMetadataInput;
}

const MOBILENET_SIZE = 224;

/** ImageNet's mean and std, which torchvision's classifiers are trained with. */
const MOBILENET_METADATA: ModelMetadataInput = {
  labels: ['empty', 'cat', 'dog'],
  input: { name: 'input', width: MOBILENET_SIZE, height: MOBILENET_SIZE, layout: 'NCHW', channelOrder: 'RGB' },
  normalization: { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  output: { name: 'logits', kind: 'logits' },
};

/** MobileNetV2, 224x224, 3 classes, dynamic batch; exported once and cached in the temp folder (PyTorch takes ~10 s). */
export async function mobileNetV2(): Promise<BenchModel> {
  const modelPath = await torchvisionModel('mobilenet_v2', MOBILENET_SIZE, MOBILENET_METADATA.labels.length);
  return { name: 'mobilenet-v2', version: '1.0.0', modelPath, metadata: modelMetadataSchema.parse(MOBILENET_METADATA), metadataInput: MOBILENET_METADATA };
}

/** The demo pet-park classifier (trained on first use, about 15 s; cached under workDir). */
export async function demoModel(workDir: string): Promise<BenchModel> {
  const demo = await buildDemoModel({ outDir: workDir });
  // The file also carries name, version and the training record; the registry and agent read only the contract's fields.
  const raw: unknown = JSON.parse(await readFile(demo.metadataPath, 'utf8'));
  const metadata = modelMetadataSchema.parse(raw);
  return { name: 'pet-park-classifier', version: '1.0.0', modelPath: path.resolve(demo.modelPath), metadata, metadataInput: metadata };
}
