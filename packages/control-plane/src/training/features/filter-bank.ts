/**
 * Fixed (untrained) convolution filters for the feature extractor. The first layer is
 * hand-designed so its responses mean something on any image (oriented edges, bars,
 * colour opponents, blobs); deeper layers are seeded random projections of those
 * responses, which is enough for a linear head to separate simple shapes.
 */
import type { Rng } from '../pet-park/prng.js';

/** Luminance weights per RGB channel. */
const LUMA = [0.299, 0.587, 0.114] as const;

export interface FilterBank {
  outChannels: number;
  inChannels: number;
  kernel: number;
  /** [out, in, k, k] row-major. */
  weights: Float32Array;
}

type Spatial = (x: number, y: number) => number;

/** Zero mean (blind to flat brightness) and unit L2 norm (comparable response scales). */
function normalizeSpatial(values: Float64Array): Float64Array {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  for (let i = 0; i < values.length; i++) values[i] = (values[i] ?? 0) - mean;
  const norm = Math.sqrt(values.reduce((a, b) => a + b * b, 0)) || 1;
  for (let i = 0; i < values.length; i++) values[i] = (values[i] ?? 0) / norm;
  return values;
}

function sampleSpatial(kernel: number, f: Spatial): Float64Array {
  const half = (kernel - 1) / 2;
  const out = new Float64Array(kernel * kernel);
  for (let y = 0; y < kernel; y++) for (let x = 0; x < kernel; x++) out[y * kernel + x] = f(x - half, y - half);
  return out;
}

const gaussian = (sigma: number): Spatial => (x, y) => Math.exp(-(x * x + y * y) / (2 * sigma * sigma));

function gabor(thetaRad: number, wavelength: number, sigma: number, phase: 'odd' | 'even'): Spatial {
  const c = Math.cos(thetaRad);
  const s = Math.sin(thetaRad);
  return (x, y) => {
    const u = x * c + y * s;
    const carrier = phase === 'odd' ? Math.sin((2 * Math.PI * u) / wavelength) : Math.cos((2 * Math.PI * u) / wavelength);
    return gaussian(sigma)(x, y) * carrier;
  };
}

/** A spatial kernel applied to the three colour channels with the given channel mix. */
function colourFilter(kernel: number, spatial: Float64Array, mix: readonly number[], zeroMeanSpatial: boolean): Float64Array {
  const s = zeroMeanSpatial ? normalizeSpatial(spatial) : spatial;
  const area = kernel * kernel;
  const out = new Float64Array(3 * area);
  for (let c = 0; c < 3; c++) for (let i = 0; i < area; i++) out[c * area + i] = (mix[c] ?? 0) * (s[i] ?? 0);
  return out;
}

/** Layer 1: structured filters over RGB, padded with seeded random colour-edge filters. */
export function firstLayerFilters(kernel: number, outChannels: number, rng: Rng): FilterBank {
  const filters: Float64Array[] = [];
  // Directional edges: 8 directions so the sign (dark-to-light vs light-to-dark) survives ReLU.
  for (let k = 0; k < 8; k++) filters.push(colourFilter(kernel, sampleSpatial(kernel, gabor((k * Math.PI) / 4, 4, 1.2, 'odd')), LUMA, true));
  // Thin bright and dark bars (whiskers, legs, tails) at 4 orientations.
  for (let k = 0; k < 4; k++) {
    const bar = sampleSpatial(kernel, gabor((k * Math.PI) / 4, 4, 1.1, 'even'));
    filters.push(colourFilter(kernel, bar, LUMA, true));
    filters.push(colourFilter(kernel, bar, LUMA.map((v) => -v), true));
  }
  // Colour opponents (smooth): red-green and blue-yellow, both signs.
  const positiveBlob = sampleSpatial(kernel, gaussian(1.5));
  const blobNorm = Math.sqrt(positiveBlob.reduce((a, b) => a + b * b, 0));
  const smooth = positiveBlob.map((v) => v / blobNorm);
  for (const mix of [[1, -1, 0], [-1, 1, 0], [-0.5, -0.5, 1], [0.5, 0.5, -1]]) filters.push(colourFilter(kernel, smooth, mix, false));
  // Centre-surround luminance blobs (spots such as eyes and noses), both signs.
  const dog = sampleSpatial(kernel, (x, y) => gaussian(0.8)(x, y) - 0.45 * gaussian(1.8)(x, y));
  filters.push(colourFilter(kernel, dog, LUMA, true), colourFilter(kernel, dog, LUMA.map((v) => -v), true));
  while (filters.length < outChannels) {
    const random = new Float64Array(3 * kernel * kernel).map(() => rng.normal());
    filters.push(normalizeSpatial(random));
  }
  return packFilters(filters.slice(0, outChannels), 3, kernel);
}

/** Deeper layers: zero-mean, unit-norm Gaussian random filters. */
export function randomFilters(inChannels: number, outChannels: number, kernel: number, rng: Rng): FilterBank {
  const filters = Array.from({ length: outChannels }, () =>
    normalizeSpatial(new Float64Array(inChannels * kernel * kernel).map(() => rng.normal())),
  );
  return packFilters(filters, inChannels, kernel);
}

function packFilters(filters: readonly Float64Array[], inChannels: number, kernel: number): FilterBank {
  const size = inChannels * kernel * kernel;
  const weights = new Float32Array(filters.length * size);
  filters.forEach((f, i) => {
    if (f.length !== size) throw new Error(`filter ${i} has ${f.length} weights, expected ${size}`);
    weights.set(f, i * size);
  });
  return { outChannels: filters.length, inChannels, kernel, weights };
}
