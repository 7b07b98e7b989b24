/**
 * Per-feature standardisation. Training happens on standardised features (well
 * conditioned for gradient descent); the statistics are then folded into the linear
 * layer so the exported model takes raw features and needs no extra ops.
 */
export interface FeatureStats {
  mean: Float64Array;
  std: Float64Array;
}

/** Features whose spread is below this are treated as constant (their weight becomes irrelevant). */
const MIN_STD = 1e-6;

export function featureStats(data: Float32Array, rows: number, columns: number): FeatureStats {
  if (rows < 1 || data.length !== rows * columns) throw new Error(`featureStats: ${data.length} values is not ${rows}x${columns}`);
  const mean = new Float64Array(columns);
  const sq = new Float64Array(columns);
  for (let r = 0; r < rows; r++) {
    const base = r * columns;
    for (let j = 0; j < columns; j++) {
      const v = data[base + j] ?? 0;
      mean[j] = (mean[j] ?? 0) + v;
      sq[j] = (sq[j] ?? 0) + v * v;
    }
  }
  const std = new Float64Array(columns);
  for (let j = 0; j < columns; j++) {
    const m = (mean[j] ?? 0) / rows;
    mean[j] = m;
    std[j] = Math.max(MIN_STD, Math.sqrt(Math.max(0, (sq[j] ?? 0) / rows - m * m)));
  }
  return { mean, std };
}

export function standardize(data: Float32Array, columns: number, stats: FeatureStats): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const j = i % columns;
    out[i] = ((data[i] ?? 0) - (stats.mean[j] ?? 0)) / (stats.std[j] ?? 1);
  }
  return out;
}

/**
 * For logits = W z + b with z = (x - mean) / std, returns W', b' such that
 * logits = W' x + b': W'[k][j] = W[k][j] / std[j], b'[k] = b[k] - sum_j W'[k][j] * mean[j].
 */
export function foldStandardization(
  weights: Float32Array,
  bias: Float32Array,
  classes: number,
  stats: FeatureStats,
): { weights: Float32Array; bias: Float32Array } {
  const columns = stats.mean.length;
  if (weights.length !== classes * columns || bias.length !== classes) throw new Error('foldStandardization: shape mismatch');
  const w = new Float32Array(weights.length);
  const b = new Float32Array(classes);
  for (let k = 0; k < classes; k++) {
    let shift = 0;
    for (let j = 0; j < columns; j++) {
      const folded = (weights[k * columns + j] ?? 0) / (stats.std[j] ?? 1);
      w[k * columns + j] = folded;
      shift += folded * (stats.mean[j] ?? 0);
    }
    b[k] = (bias[k] ?? 0) - shift;
  }
  return { weights: w, bias: b };
}
