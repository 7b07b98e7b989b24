/**
 * Stretching resize (no aspect preservation) of raw RGB, in TypeScript. It does what
 * ffmpeg's `scale=W:H` (bicubic) and sharp's `fit: 'fill'` do: a separable cubic
 * kernel, widened when shrinking so it averages instead of aliasing, edges clamped.
 * Done here rather than with sharp because a per-image sharp call costs more than
 * the resampling itself, and every tile of an atlas needs its own resize.
 */
import type { RgbImage } from './rgb-image.js';

interface AxisWeights {
  taps: number;
  /** First source index per output index (may be out of range; clamped when read). */
  start: Int32Array;
  /** [out * taps] normalised weights. */
  weights: Float32Array;
}

/** Keys cubic convolution kernel, a = -0.5 (Catmull-Rom). */
function cubic(x: number): number {
  const t = Math.abs(x);
  if (t < 1) return 1.5 * t * t * t - 2.5 * t * t + 1;
  if (t < 2) return -0.5 * t * t * t + 2.5 * t * t - 4 * t + 2;
  return 0;
}

const axisCache = new Map<string, AxisWeights>();

function axisWeights(inSize: number, outSize: number): AxisWeights {
  const key = `${inSize}>${outSize}`;
  const cached = axisCache.get(key);
  if (cached) return cached;
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = 2 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const weights = new Float32Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale - 0.5;
    const first = Math.ceil(centre - support);
    start[o] = first;
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const w = cubic((first + k - centre) / filterScale);
      weights[o * taps + k] = w;
      sum += w;
    }
    for (let k = 0; k < taps; k++) weights[o * taps + k] = (weights[o * taps + k] ?? 0) / sum;
  }
  const result = { taps, start, weights };
  axisCache.set(key, result);
  return result;
}

/**
 * Resizes the `region` (default: whole image) of `src` to width x height.
 * The region form lets atlas tiles be resized without copying them out first.
 */
export function resizeRgb(
  src: RgbImage,
  width: number,
  height: number,
  region: { left: number; top: number; width: number; height: number } = { left: 0, top: 0, width: src.width, height: src.height },
): RgbImage {
  if (region.left < 0 || region.top < 0 || region.left + region.width > src.width || region.top + region.height > src.height) {
    throw new Error(`resizeRgb: region ${JSON.stringify(region)} outside ${src.width}x${src.height} image`);
  }
  const hx = axisWeights(region.width, width);
  const vy = axisWeights(region.height, height);
  const stride = src.width * 3;
  const data = src.data;

  // Byte offsets of every horizontal tap within a row, edge-clamped once up front.
  const tapOffset = new Int32Array(width * hx.taps);
  for (let x = 0; x < width; x++) {
    for (let k = 0; k < hx.taps; k++) {
      tapOffset[x * hx.taps + k] = (region.left + Math.min(region.width - 1, Math.max(0, (hx.start[x] ?? 0) + k))) * 3;
    }
  }

  // Horizontal pass over the region's rows: [region.height, width, 3].
  const tmp = new Float32Array(region.height * width * 3);
  for (let y = 0; y < region.height; y++) {
    const rowBase = (region.top + y) * stride;
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = x * hx.taps, end = k + hx.taps; k < end; k++) {
        const w = hx.weights[k] ?? 0;
        const p = rowBase + (tapOffset[k] ?? 0);
        r += w * (data[p] ?? 0);
        g += w * (data[p + 1] ?? 0);
        b += w * (data[p + 2] ?? 0);
      }
      const t = (y * width + x) * 3;
      tmp[t] = r;
      tmp[t + 1] = g;
      tmp[t + 2] = b;
    }
  }

  // Vertical pass, accumulating one output row at a time.
  const out = new Uint8Array(width * height * 3);
  const rowLen = width * 3;
  const acc = new Float32Array(rowLen);
  for (let y = 0; y < height; y++) {
    acc.fill(0);
    const first = vy.start[y] ?? 0;
    for (let k = 0; k < vy.taps; k++) {
      const w = vy.weights[y * vy.taps + k] ?? 0;
      if (w === 0) continue;
      const srcRow = Math.min(region.height - 1, Math.max(0, first + k)) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] = (acc[i] ?? 0) + w * (tmp[srcRow + i] ?? 0);
    }
    const dstRow = y * rowLen;
    for (let i = 0; i < rowLen; i++) {
      const v = acc[i] ?? 0;
      out[dstRow + i] = v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5;
    }
  }
  return { width, height, data: out };
}
