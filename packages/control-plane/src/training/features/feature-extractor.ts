/**
 * The fixed convolutional feature extractor, written as ONNX ops:
 *
 *   input [N,3,H,W]
 *   -> conv5x5, hand-designed bank -> ReLU -> maxpool 2   (H/2 x W/2)  -> 4x4 grid: average and max
 *   -> conv3x3, seeded random      -> ReLU -> maxpool 2   (H/4 x W/4)  -> 4x4 grid max + global max
 *   -> concat of the flattened poolings: [N, featureCount]
 *
 * The grids keep coarse layout (where the edges, colours and part-like responses
 * are) for the linear head; max pooling per cell tolerates the animal moving within
 * a cell, global max tolerates it being anywhere. A third random layer was tried and
 * did not help a linear head on this data, it only cost time.
 */
import { createRng, deriveSeed } from '../pet-park/prng.js';
import type { GraphBuilder } from '../onnx-graph/graph-builder.js';
import { averagePool, concat, conv, flatten, globalMaxPool, maxPool, relu } from '../onnx-graph/ops.js';
import { firstLayerFilters, randomFilters } from './filter-bank.js';

export interface FeatureExtractorSpec {
  seed: number;
  /** Model input size; multiples of 16 so both pooling grids divide evenly. */
  width: number;
  height: number;
  /** Output channels of the two conv layers. */
  channels?: readonly [number, number];
}

export const DEFAULT_FEATURE_CHANNELS = [32, 64] as const;
const GRID = 4;

export interface FeatureExtractor {
  /** Name of the [N, featureCount] value. */
  output: string;
  featureCount: number;
}

export function assertFeatureInputSize(width: number, height: number): void {
  for (const [key, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 32 || v > 512 || v % 16 !== 0) {
      throw new Error(`feature extractor: input ${key} must be a multiple of 16 in [32, 512], got ${v}`);
    }
  }
}

export function addFeatureExtractor(g: GraphBuilder, input: string, spec: FeatureExtractorSpec, outputName?: string): FeatureExtractor {
  assertFeatureInputSize(spec.width, spec.height);
  const [c1, c2] = spec.channels ?? DEFAULT_FEATURE_CHANNELS;
  const rng = createRng(deriveSeed(spec.seed, 0xfea7));

  const bank1 = firstLayerFilters(5, c1, rng.fork());
  const l1 = maxPool(g, relu(g, conv(g, input, { ...bank1, name: 'features.conv1' })), 2);
  const bank2 = randomFilters(c1, c2, 3, rng.fork());
  const l2 = maxPool(g, relu(g, conv(g, l1, { ...bank2, name: 'features.conv2' })), 2);

  // Cell sizes of the 4x4 grids on the H/2 and H/4 maps.
  const cell1 = { h: spec.height / 2 / GRID, w: spec.width / 2 / GRID };
  const cell2 = { h: spec.height / 4 / GRID, w: spec.width / 4 / GRID };
  const cells = GRID * GRID;
  const pooled = [
    { value: averagePool(g, l1, cell1.h, cell1.w), count: c1 * cells },
    { value: maxPool(g, l1, cell1.h, cell1.w), count: c1 * cells },
    { value: maxPool(g, l2, cell2.h, cell2.w), count: c2 * cells },
    { value: globalMaxPool(g, l2), count: c2 },
  ];
  const output = concat(
    g,
    pooled.map((p) => flatten(g, p.value)),
    1,
    outputName,
  );
  return { output, featureCount: pooled.reduce((sum, p) => sum + p.count, 0) };
}
