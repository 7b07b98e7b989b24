// softmax and toProbabilities live in @perch/shared: the registry computes each model's golden output with them.
export { softmax, toProbabilities } from '@perch/shared';

export interface Top1 {
  index: number;
  confidence: number;
}

export function top1(probabilities: ArrayLike<number>): Top1 {
  let index = 0;
  let confidence = -Infinity;
  for (let i = 0; i < probabilities.length; i++) {
    const p = probabilities[i] as number;
    if (p > confidence) {
      confidence = p;
      index = i;
    }
  }
  return { index, confidence };
}
