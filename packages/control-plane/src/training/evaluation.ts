/** Accuracy and confusion matrix from per-row class probabilities. */
export interface Evaluation {
  accuracy: number;
  /** confusion[trueClass][predictedClass] = count. */
  confusion: number[][];
}

export function argmaxRows(probabilities: Float32Array | Float64Array, classes: number): Int32Array {
  const rows = probabilities.length / classes;
  if (!Number.isInteger(rows)) throw new Error(`argmaxRows: ${probabilities.length} values is not a multiple of ${classes}`);
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if ((probabilities[r * classes + k] ?? 0) > (probabilities[r * classes + best] ?? 0)) best = k;
    out[r] = best;
  }
  return out;
}

export function evaluate(predicted: Int32Array, truth: Int32Array, classes: number): Evaluation {
  if (predicted.length !== truth.length || truth.length === 0) {
    throw new Error(`evaluate: need equally long non-empty arrays, got ${predicted.length} and ${truth.length}`);
  }
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let correct = 0;
  truth.forEach((t, i) => {
    const p = predicted[i] ?? -1;
    const row = confusion[t];
    if (!row || p < 0 || p >= classes) throw new Error(`evaluate: class out of range (truth ${t}, predicted ${p})`);
    row[p] = (row[p] ?? 0) + 1;
    if (p === t) correct++;
  });
  return { accuracy: correct / truth.length, confusion };
}
