import { canonicalize } from '@tufjs/canonical-json';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json.js';

describe('canonical JSON', () => {
  it('gives the bytes of TUF canonical JSON for documents it can encode', () => {
    const doc = { b: [1, 'x', { z: null, a: true }], a: 'q"uote\\back\u00e9', n: -3 };
    expect(canonicalJson(doc)).toBe(canonicalize(doc));
    expect(canonicalJson(doc)).toBe('{"a":"q\\"uote\\\\back\u00e9","b":[1,"x",{"a":true,"z":null}],"n":-3}');
  });

  it('encodes non-integer numbers in their shortest round-trip form', () => {
    expect(canonicalJson({ scale: 1 / 255, mean: [0.485, 0.456, 0.406], big: 1e21, tiny: 5e-7 })).toBe(
      '{"big":1e+21,"mean":[0.485,0.456,0.406],"scale":0.00392156862745098,"tiny":5e-7}',
    );
  });

  it('refuses what JSON cannot carry', () => {
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(TypeError);
    expect(() => canonicalJson([Infinity])).toThrow(TypeError);
    expect(() => canonicalJson({ x: undefined })).toThrow(TypeError);
  });
});
