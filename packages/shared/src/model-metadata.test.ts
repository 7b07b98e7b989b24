import { describe, expect, it } from 'vitest';
import { modelMetadataSchema, type ModelMetadataInput } from './model-metadata.js';

const base: ModelMetadataInput = {
  labels: ['cat', 'dog'],
  input: { name: 'input', width: 32, height: 32, layout: 'NCHW', channelOrder: 'RGB' },
  normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
  output: { name: 'probs', kind: 'probabilities' },
};

describe('model metadata labels', () => {
  it('takes unique labels and refuses repeats and "__proto__", naming the field', () => {
    expect(modelMetadataSchema.safeParse(base).success).toBe(true);
    for (const [labels, message] of [
      [['cat', 'cat'], 'labels must be unique'],
      [['cat', '__proto__'], 'a label may not be "__proto__"'],
    ] as const) {
      const r = modelMetadataSchema.safeParse({ ...base, labels });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]).toMatchObject({ path: ['labels'], message });
    }
  });
});
