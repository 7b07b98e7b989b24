import type { ModelMetadata } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { challengerInput, resampleRgb24 } from './challenger-input.js';

const meta = buildTinyModel().metadata;
const withInput = (input: Partial<ModelMetadata['input']>): ModelMetadata => ({ ...meta, input: { ...meta.input, ...input } });

describe("a challenger's input from the champion's frames", () => {
  it('shares the preprocessed input only when the tensors are the same', () => {
    expect(challengerInput(meta, meta)).toEqual({ kind: 'shared' });
    expect(challengerInput(meta, withInput({ channelOrder: 'BGR' }))).toEqual({ kind: 'frame' });
    expect(challengerInput(meta, withInput({ layout: 'NHWC' }))).toEqual({ kind: 'frame' });
    expect(challengerInput(meta, { ...meta, normalization: { ...meta.normalization, mean: [0.5, 0.5, 0.5] } })).toEqual({ kind: 'frame' });
  });

  it('rescales when the fits compose, and says why when they do not', () => {
    expect(challengerInput(meta, withInput({ width: 16, height: 12 }))).toEqual({ kind: 'resample' });
    const box = withInput({ resize: 'letterbox' });
    expect(challengerInput(box, withInput({ resize: 'letterbox', width: 16, height: 16 }))).toEqual({ kind: 'resample' });
    const crop = challengerInput(box, withInput({ resize: 'centre-crop', width: 16, height: 16 }));
    expect(crop).toEqual({ kind: 'incompatible', reason: "the challenger's input (16x16, centre-crop) cannot be made from the champion's frames (8x8, letterbox)" });
    expect(challengerInput(box, withInput({ resize: 'letterbox', width: 16, height: 8 })).kind).toBe('incompatible');
  });

  it('rescales rgb24 bilinearly: a solid frame stays solid, a ramp stays a ramp', () => {
    const solid = new Uint8Array(4 * 4 * 3).map((_, i) => [200, 10, 90][i % 3] ?? 0);
    expect(Array.from(resampleRgb24(solid, 4, 4, 7, 5))).toEqual(Array.from({ length: 7 * 5 * 3 }, (_, i) => [200, 10, 90][i % 3]));
    // A horizontal ramp 0, 100, 200 in red, halved: pixel centres fall between the columns.
    const ramp = new Uint8Array([0, 0, 0, 100, 0, 0, 200, 0, 0, 0, 0, 0, 100, 0, 0, 200, 0, 0]);
    const wide = resampleRgb24(ramp, 3, 2, 6, 2);
    const reds = Array.from({ length: 6 }, (_, x) => wide[x * 3]);
    expect(reds).toEqual([0, 25, 75, 125, 175, 200]);
    expect(() => resampleRgb24(ramp, 4, 2, 6, 2)).toThrow(RangeError);
  });
});
