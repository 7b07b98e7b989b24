/**
 * Balanced, labelled pet-park images for training and evaluation. Each sample is
 * rendered at camera aspect and then stretched to the model input size, the same
 * path a camera frame takes through ffmpeg's `scale=W:H`.
 */
import { z } from 'zod';
import { PET_PARK_LABELS, labelIndex, type PetParkLabel } from './labels.js';
import { createRng, deriveSeed } from './prng.js';
import { renderScenes } from './render-scene.js';
import type { RgbImage } from './rgb-image.js';
import { sampleScene } from './sample-scene.js';
import type { SceneSpec } from './scene-spec.js';

/** Scenes rendered per atlas call. */
const CHUNK = 36;

export interface PetParkSample {
  label: PetParkLabel;
  /** Index into PET_PARK_LABELS. */
  labelIndex: number;
  /** Raw RGB (HWC) at the requested width x height. */
  image: RgbImage;
}

const side = z.number().int().min(8).max(4096);

const datasetOptionsSchema = z.object({
  count: z.number().int().min(1).max(200_000),
  seed: z.number().int().min(0).max(0xffffffff),
  width: side,
  height: side,
  /** Render resolution before the stretch; 4:3 like the camera. */
  sceneWidth: side.default(160),
  sceneHeight: side.default(120),
  /** Atlas renders in flight; sharp runs them on libuv's thread pool. */
  concurrency: z.number().int().min(1).max(16).default(3),
});

export type DatasetOptions = z.input<typeof datasetOptionsSchema>;

/** Class of sample `index`: classes rotate so any prefix of the dataset stays balanced. */
export function datasetLabel(index: number): PetParkLabel {
  const label = PET_PARK_LABELS[index % PET_PARK_LABELS.length];
  if (label === undefined) throw new Error(`datasetLabel: bad index ${index}`);
  return label;
}

/** Scene of sample `index`: a pure function of (seed, index), so any sample can be regenerated alone. */
export function datasetScene(seed: number, index: number): SceneSpec {
  return sampleScene(datasetLabel(index), createRng(deriveSeed(seed, index)));
}

export async function generateDataset(options: DatasetOptions): Promise<PetParkSample[]> {
  const parsed = datasetOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`generateDataset: invalid options: ${z.prettifyError(parsed.error)}`);
  const o = parsed.data;
  const size = { width: o.width, height: o.height };
  const rasterSize = { width: o.sceneWidth, height: o.sceneHeight };
  const samples = new Array<PetParkSample | undefined>(o.count);
  let nextStart = 0;
  // Several chunks in flight: while sharp rasterises one atlas on its threads, JS post-processes another.
  const worker = async (): Promise<void> => {
    while (nextStart < o.count) {
      const start = nextStart;
      nextStart += CHUNK;
      const indices = Array.from({ length: Math.min(CHUNK, o.count - start) }, (_, i) => start + i);
      const images = await renderScenes(indices.map((i) => datasetScene(o.seed, i)), size, { rasterSize });
      images.forEach((image, i) => {
        const label = datasetLabel(start + i);
        samples[start + i] = { label, labelIndex: labelIndex(label), image };
      });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return samples.map((s, i) => {
    if (!s) throw new Error(`generateDataset: sample ${i} missing`);
    return s;
  });
}
