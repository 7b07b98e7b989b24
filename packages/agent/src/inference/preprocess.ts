import type { ModelMetadata } from '@perch/shared';

export type Preprocessor = (frame: Uint8Array, out?: Float32Array) => Float32Array;

/**
 * Turns an rgb24 HWC frame (ffmpeg has already scaled it to the model's
 * width x height) into the model's input tensor data:
 * x = (pixel * scale - mean[c]) / std[c], c in the model's channel order,
 * laid out NCHW or NHWC. A pixel has only 256 values, so each channel's
 * formula is a 256-entry lookup table built once per model.
 */
export function createPreprocessor(meta: ModelMetadata): Preprocessor {
  const { width, height, layout, channelOrder } = meta.input;
  const { scale, mean, std } = meta.normalization;
  const pixels = width * height;
  const size = pixels * 3;
  // Model channel c reads this byte of an RGB pixel.
  const source = channelOrder === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const luts = [0, 1, 2].map((c) => {
    const lut = new Float32Array(256);
    const m = mean[c] ?? 0;
    const s = std[c] ?? 1;
    for (let p = 0; p < 256; p++) lut[p] = (p * scale - m) / s;
    return lut;
  });
  const [lut0, lut1, lut2] = luts as [Float32Array, Float32Array, Float32Array];
  const [s0, s1, s2] = source as [number, number, number];

  return (frame, out = new Float32Array(size)) => {
    if (frame.length !== size) throw new RangeError(`frame has ${frame.length} bytes, the model needs ${width}x${height}x3 = ${size}`);
    if (out.length !== size) throw new RangeError(`output buffer has ${out.length} values, needs ${size}`);
    if (layout === 'NCHW') {
      for (let i = 0, p = 0; i < pixels; i++, p += 3) {
        out[i] = lut0[frame[p + s0] as number] as number;
        out[pixels + i] = lut1[frame[p + s1] as number] as number;
        out[2 * pixels + i] = lut2[frame[p + s2] as number] as number;
      }
    } else {
      for (let p = 0; p < size; p += 3) {
        out[p] = lut0[frame[p + s0] as number] as number;
        out[p + 1] = lut1[frame[p + s1] as number] as number;
        out[p + 2] = lut2[frame[p + s2] as number] as number;
      }
    }
    return out;
  };
}

/** Input tensor dimensions for a batch of one. */
export function inputDims(meta: ModelMetadata): [number, number, number, number] {
  const { width, height, layout } = meta.input;
  return layout === 'NCHW' ? [1, 3, height, width] : [1, height, width, 3];
}
