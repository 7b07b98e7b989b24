/**
 * The model's input contract: x = (pixel * scale - mean[c]) / std[c], RGB, NCHW.
 * The same numbers are written to the model's JSON so every consumer preprocesses alike.
 */
import type { RgbImage } from './pet-park/rgb-image.js';

export interface Normalization {
  scale: number;
  mean: [number, number, number];
  std: [number, number, number];
}

/** Centres pixels at mid-grey with roughly unit spread; no dataset statistics needed. */
export const DEFAULT_NORMALIZATION: Normalization = {
  scale: 1 / 255,
  mean: [0.5, 0.5, 0.5],
  std: [0.25, 0.25, 0.25],
};

/** Packs HWC RGB images of identical size into one normalised NCHW float batch. */
export function imagesToNchw(images: readonly RgbImage[], width: number, height: number, norm: Normalization): Float32Array {
  const plane = width * height;
  const out = new Float32Array(images.length * 3 * plane);
  const gains = norm.std.map((s) => norm.scale / s);
  const offsets = norm.mean.map((m, c) => -m / (norm.std[c] ?? 1));
  images.forEach((image, n) => {
    if (image.width !== width || image.height !== height || image.data.length !== plane * 3) {
      throw new Error(`imagesToNchw: image ${n} is ${image.width}x${image.height} (${image.data.length} bytes), expected ${width}x${height} RGB`);
    }
    const src = image.data;
    for (let c = 0; c < 3; c++) {
      const gain = gains[c] ?? 1;
      const offset = offsets[c] ?? 0;
      const base = (n * 3 + c) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = (src[i * 3 + c] ?? 0) * gain + offset;
    }
  });
  return out;
}
