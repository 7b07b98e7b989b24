/** Training-set augmentation. Mirroring is free (no rendering) and parks look the same mirrored. */
import type { RgbImage } from './pet-park/rgb-image.js';

export function mirrorHorizontally(image: RgbImage): RgbImage {
  const { width, height, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let x = 0; x < width; x++) {
      const src = row + x * 3;
      const dst = row + (width - 1 - x) * 3;
      out[dst] = data[src] ?? 0;
      out[dst + 1] = data[src + 1] ?? 0;
      out[dst + 2] = data[src + 2] ?? 0;
    }
  }
  return { width, height, data: out };
}
