import { modelMetadataSchema, type ModelMetadata, type ModelMetadataInput } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { softmax, toProbabilities, top1 } from './postprocess.js';
import { createPreprocessor, inputDims } from './preprocess.js';

function meta(over: Partial<ModelMetadataInput['input']>, normalization?: ModelMetadataInput['normalization']): ModelMetadata {
  return modelMetadataSchema.parse({
    labels: ['a', 'b'],
    input: { name: 'x', width: 8, height: 8, layout: 'NCHW', channelOrder: 'RGB', ...over },
    normalization: normalization ?? { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    output: { name: 'y', kind: 'logits' },
  });
}

/** An 8x8 frame (the metadata minimum) whose pixel i is (10*i, 10*i+1, 10*i+2) mod 256 per channel. */
function frame(): Uint8Array {
  const f = new Uint8Array(8 * 8 * 3);
  for (let i = 0; i < 64; i++) {
    f[i * 3] = (10 * i) % 256;
    f[i * 3 + 1] = (10 * i + 1) % 256;
    f[i * 3 + 2] = (10 * i + 2) % 256;
  }
  return f;
}

describe('preprocess', () => {
  it('NCHW RGB: planes in R, G, B order, (p*scale - mean)/std', () => {
    const out = createPreprocessor(meta({}))(frame());
    expect(out).toHaveLength(192);
    // Pixel 0 = (0, 1, 2); pixel 1 = (10, 11, 12); pixel 3 = (30, 31, 32).
    expect(out[0]).toBeCloseTo((0 / 255 - 0.485) / 0.229, 5); // R of pixel 0
    expect(out[64]).toBeCloseTo((1 / 255 - 0.456) / 0.224, 5); // G of pixel 0
    expect(out[128]).toBeCloseTo((2 / 255 - 0.406) / 0.225, 5); // B of pixel 0
    expect(out[3]).toBeCloseTo((30 / 255 - 0.485) / 0.229, 5); // R of pixel 3
    expect(out[128 + 1]).toBeCloseTo((12 / 255 - 0.406) / 0.225, 5); // B of pixel 1
  });

  it('NCHW BGR: the first plane is blue, and mean/std follow the model channel order', () => {
    const out = createPreprocessor(meta({ channelOrder: 'BGR' }, { scale: 1, mean: [100, 50, 0], std: [2, 4, 8] }))(frame());
    expect(out[0]).toBe((2 - 100) / 2); // B of pixel 0, model channel 0
    expect(out[64]).toBe((1 - 50) / 4); // G of pixel 0
    expect(out[128]).toBe((0 - 0) / 8); // R of pixel 0
    expect(out[1]).toBe((12 - 100) / 2); // B of pixel 1
  });

  it('NHWC: channels interleaved per pixel', () => {
    const out = createPreprocessor(meta({ layout: 'NHWC' }, { scale: 1, mean: [0, 0, 0], std: [1, 1, 1] }))(frame());
    expect([...out.subarray(0, 6)]).toEqual([0, 1, 2, 10, 11, 12]);
    const bgr = createPreprocessor(meta({ layout: 'NHWC', channelOrder: 'BGR' }, { scale: 1, mean: [0, 0, 0], std: [1, 1, 1] }))(frame());
    expect([...bgr.subarray(0, 6)]).toEqual([2, 1, 0, 12, 11, 10]);
  });

  it('refuses a frame of the wrong size and gives batch-of-one dims', () => {
    const pre = createPreprocessor(meta({}));
    expect(() => pre(new Uint8Array(10))).toThrow(/10 bytes, the model needs 8x8x3 = 192/);
    expect(inputDims(meta({ width: 16, height: 8 }))).toEqual([1, 3, 8, 16]);
    expect(inputDims(meta({ width: 16, height: 8, layout: 'NHWC' }))).toEqual([1, 8, 16, 3]);
  });
});

describe('postprocess', () => {
  it('softmax by hand: [0, ln 3] -> [1/4, 3/4], and stays finite for large logits', () => {
    const p = softmax([0, Math.log(3)]);
    expect(p[0]).toBeCloseTo(0.25, 6);
    expect(p[1]).toBeCloseTo(0.75, 6);
    const big = softmax([1000, 1000]);
    expect([...big]).toEqual([0.5, 0.5]);
  });

  it('applies softmax only to logits, and finds the top-1', () => {
    const probs = new Float32Array([0.2, 0.7, 0.1]);
    expect(toProbabilities(probs, 'probabilities')).toBe(probs);
    expect(toProbabilities(new Float32Array([1, 1]), 'logits')[0]).toBeCloseTo(0.5);
    expect(top1(probs)).toEqual({ index: 1, confidence: probs[1] });
  });
});
