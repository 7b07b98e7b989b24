import { describe, expect, it } from 'vitest';
import { argmaxRows, evaluate } from '../evaluation.js';
import { createRng } from '../pet-park/prng.js';
import { featureStats, foldStandardization, standardize } from './standardize.js';
import { predictProbabilities, trainSoftmaxRegression } from './softmax-regression.js';

/** Three Gaussian blobs in 4-D with very different feature scales, so standardisation matters. */
function blobs(rows: number, seed: number) {
  const rng = createRng(seed);
  const centres = [
    [0, 0, 0, 0],
    [3, 0, 0, 0],
    [0, 3, 0, 0],
  ];
  const scales = [1, 100, 0.01, 5];
  const data = new Float32Array(rows * 4);
  const labels = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const label = r % 3;
    labels[r] = label;
    for (let j = 0; j < 4; j++) data[r * 4 + j] = ((centres[label]?.[j] ?? 0) + rng.normal() * 0.6) * (scales[j] ?? 1) + 7;
  }
  return { data, labels };
}

describe('softmax regression head', () => {
  it('learns separable classes and the folded head gives the same predictions on raw features', () => {
    const train = blobs(600, 1);
    const test = blobs(300, 2);
    const stats = featureStats(train.data, 600, 4);
    const head = trainSoftmaxRegression(standardize(train.data, 4, stats), train.labels, 4, { classes: 3, epochs: 40, seed: 3, learningRate: 0.02 });
    const accuracy = evaluate(argmaxRows(predictProbabilities(head, standardize(test.data, 4, stats)), 3), test.labels, 3).accuracy;
    expect(accuracy).toBeGreaterThan(0.9);

    const folded = { ...head, ...foldStandardization(head.weights, head.bias, 3, stats) };
    const viaStandardized = predictProbabilities(head, standardize(test.data, 4, stats));
    const viaFolded = predictProbabilities(folded, test.data);
    viaFolded.forEach((p, i) => expect(p).toBeCloseTo(viaStandardized[i] ?? NaN, 4));
  });

  it('outputs rows of probabilities and rejects inconsistent inputs', () => {
    const { data, labels } = blobs(30, 4);
    const head = trainSoftmaxRegression(data, labels, 4, { classes: 3, epochs: 1 });
    const probs = predictProbabilities(head, data);
    for (let r = 0; r < 30; r++) expect((probs[r * 3] ?? 0) + (probs[r * 3 + 1] ?? 0) + (probs[r * 3 + 2] ?? 0)).toBeCloseTo(1, 9);
    expect(() => trainSoftmaxRegression(data, labels, 5, { classes: 3 })).toThrow(/expected/);
    expect(() => trainSoftmaxRegression(data, Int32Array.from(labels, () => 3), 4, { classes: 3 })).toThrow(/label 3/);
    expect(() => trainSoftmaxRegression(data, labels, 4, { classes: 3, epochs: 0 })).toThrow(/epochs/);
  });

  it('computes confusion matrices', () => {
    const e = evaluate(Int32Array.of(0, 1, 1, 2), Int32Array.of(0, 1, 2, 2), 3);
    expect(e.accuracy).toBe(0.75);
    expect(e.confusion).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0, 1, 1],
    ]);
  });
});
