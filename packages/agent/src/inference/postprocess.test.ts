import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../test-support/harness.js';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { InferenceRunner, ModelLoadError } from './inference-runner.js';
import { softmax, toProbabilities } from './postprocess.js';

describe('model outputs', () => {
  it('turns logits into probabilities and refuses NaN or infinite outputs', () => {
    const p = toProbabilities(new Float32Array([1, 2, 3]), 'logits');
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(Array.from(softmax([1000, 1000]))).toEqual([0.5, 0.5]);
    expect(() => toProbabilities(new Float32Array([0.2, Number.NaN, 0.8]), 'probabilities')).toThrow(/output 1 is NaN/);
    expect(() => toProbabilities(new Float32Array([Number.POSITIVE_INFINITY, 0, 0]), 'logits')).toThrow(/not a finite number/);
  });

  it('refuses to activate a model whose outputs are NaN, with the reason', async () => {
    const dir = await tempDir();
    try {
      const model = buildTinyModel({ nan: true });
      const path = join(dir.path, 'nan.onnx');
      await writeFile(path, model.bytes);
      const runner = new InferenceRunner({ modelPath: path, metadata: model.metadata, intraOpThreads: 1 });
      const started = runner.start();
      await expect(started).rejects.toThrow(ModelLoadError);
      await expect(started).rejects.toThrow(/NaN/);
    } finally {
      await dir.remove();
    }
  });
});
