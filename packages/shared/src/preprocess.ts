import type { ModelMetadata } from './model-metadata.js';

export type Preprocessor = (frame: Uint8Array, out?: Float32Array) => Float32Array;

/**
 * Turns an rgb24 HWC frame (ffmpeg has already scaled it to the model's
 * width x height) into the model's input tensor data:
 * x = (pixel * scale - mean[c]) / std[c], c in the model's channel order,
 * laid out NCHW or NHWC. A pixel has only 256 values, so each channel's
 * formula is a 256-entry lookup table built once per model. Shared so that
 * the registry computes a model's golden output from exactly the tensor the
 * device will feed it.
 */
export function createPreprocessor(meta: ModelMetadata): Preprocessor {
  const { width, height, layout, channelOrder } = meta.input;
  const { scale, mean, std } = meta.normalization;
  const pixels = width * height;
  const size = pixels * 3;
  // Model channel c reads this byte of an RGB pixel; turned around, the byte k of a pixel goes to model channel dest[k].
  const source = channelOrder === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const lutOf = (c: number): Float32Array => {
    const lut = new Float32Array(256);
    const m = mean[c] ?? 0;
    const s = std[c] ?? 1;
    for (let p = 0; p < 256; p++) lut[p] = (p * scale - m) / s;
    return lut;
  };
  const dest = [0, 1, 2].map((k) => source.indexOf(k));
  const [c0, c1, c2] = dest as [number, number, number];
  const [l0, l1, l2] = [lutOf(c0), lutOf(c1), lutOf(c2)];

  return (frame, out = new Float32Array(size)) => {
    if (frame.length !== size) throw new RangeError(`frame has ${frame.length} bytes, the model needs ${width}x${height}x3 = ${size}`);
    if (out.length !== size) throw new RangeError(`output buffer has ${out.length} values, needs ${size}`);
    if (layout === 'NCHW') toPlanar(frame, out, pixels, l0, l1, l2, c0 * pixels, c1 * pixels, c2 * pixels);
    else toInterleaved(frame, out, size, l0, l1, l2, c0, c1, c2);
    return out;
  };
}

// The loops are top-level functions taking everything as arguments, not
// closures over one model's constants: closures made by one function share
// V8's optimised code, which slowed the loop ~2.5x for every model as soon
// as a second preprocessor existed (after the first model swap). Byte k of a
// pixel, read at a fixed offset, goes through lut k to channel k's place.

function toPlanar(frame: Uint8Array, out: Float32Array, pixels: number, l0: Float32Array, l1: Float32Array, l2: Float32Array, o0: number, o1: number, o2: number): void {
  for (let i = 0, p = 0; i < pixels; i++, p += 3) {
    out[o0 + i] = l0[frame[p] as number] as number;
    out[o1 + i] = l1[frame[p + 1] as number] as number;
    out[o2 + i] = l2[frame[p + 2] as number] as number;
  }
}

function toInterleaved(frame: Uint8Array, out: Float32Array, size: number, l0: Float32Array, l1: Float32Array, l2: Float32Array, o0: number, o1: number, o2: number): void {
  for (let p = 0; p < size; p += 3) {
    out[p + o0] = l0[frame[p] as number] as number;
    out[p + o1] = l1[frame[p + 1] as number] as number;
    out[p + o2] = l2[frame[p + 2] as number] as number;
  }
}

/** Input tensor dimensions for a batch of one. */
export function inputDims(meta: ModelMetadata): [number, number, number, number] {
  const { width, height, layout } = meta.input;
  return layout === 'NCHW' ? [1, 3, height, width] : [1, height, width, 3];
}
