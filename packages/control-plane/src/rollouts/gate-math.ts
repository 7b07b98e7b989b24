/**
 * The statistics gates judge a canary with: on top-1 label counts the
 * Jensen-Shannon divergence and Pearson's chi-square test of homogeneity;
 * on p95 latency a ratio with an absolute floor.
 */

export type LabelCounts = Record<string, number>;

/**
 * Whether a candidate's p95 latency is worse than its reference's by more
 * than both limits: the ratio over `maxRatio` and the increase over
 * `minIncreaseMs`. The floor keeps sub-millisecond models from failing on
 * jitter (0.2 -> 0.5 ms is a ratio of 2.5 that nobody notices); the ratio
 * keeps a slow model's noise from failing it.
 */
export function latencyRegressed(candidateP95Ms: number, referenceP95Ms: number, maxRatio: number, minIncreaseMs: number): boolean {
  return candidateP95Ms > referenceP95Ms * maxRatio && candidateP95Ms - referenceP95Ms > minIncreaseMs;
}

function labelsOf(a: LabelCounts, b: LabelCounts): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((l) => (a[l] ?? 0) + (b[l] ?? 0) > 0).sort();
}

function total(c: LabelCounts): number {
  let n = 0;
  for (const k in c) n += c[k] as number;
  return n;
}

/**
 * Jensen-Shannon divergence of two count vectors as distributions, in bits:
 * 0 for the same mix, 1 for disjoint labels. NaN when either side is empty.
 */
export function jensenShannonDivergence(a: LabelCounts, b: LabelCounts): number {
  const na = total(a);
  const nb = total(b);
  if (na === 0 || nb === 0) return Number.NaN;
  let js = 0;
  for (const l of labelsOf(a, b)) {
    const p = (a[l] ?? 0) / na;
    const q = (b[l] ?? 0) / nb;
    const m = (p + q) / 2;
    if (p > 0) js += 0.5 * p * Math.log2(p / m);
    if (q > 0) js += 0.5 * q * Math.log2(q / m);
  }
  // Rounding can leave a hair below 0 or above 1.
  return Math.min(1, Math.max(0, js));
}

export interface ChiSquareResult {
  statistic: number;
  degreesOfFreedom: number;
  pValue: number;
}

/**
 * Pearson's chi-square test that two samples of labels come from the same
 * distribution (a 2 x k contingency table, labels seen in neither dropped).
 * One label in all: nothing to compare, p = 1.
 */
export function chiSquareHomogeneity(a: LabelCounts, b: LabelCounts): ChiSquareResult {
  const labels = labelsOf(a, b);
  const na = total(a);
  const nb = total(b);
  const n = na + nb;
  const df = labels.length - 1;
  if (na === 0 || nb === 0 || df < 1) return { statistic: 0, degreesOfFreedom: Math.max(0, df), pValue: 1 };
  let stat = 0;
  for (const l of labels) {
    const col = (a[l] ?? 0) + (b[l] ?? 0);
    for (const [observed, rowTotal] of [[a[l] ?? 0, na], [b[l] ?? 0, nb]] as const) {
      const expected = (rowTotal * col) / n;
      stat += (observed - expected) ** 2 / expected;
    }
  }
  return { statistic: stat, degreesOfFreedom: df, pValue: chiSquareSurvival(stat, df) };
}

/** P(X >= x) for X chi-square with `df` degrees of freedom: Q(df/2, x/2). */
export function chiSquareSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

const EPS = 1e-15;
const MAX_ITER = 1000;

function logGamma(x: number): number {
  // Lanczos (g = 7, n = 9): ~15 significant digits for x > 0.
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let s = c[0] as number;
  for (let i = 1; i < 9; i++) s += (c[i] as number) / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(s);
}

/** The regularized upper incomplete gamma function Q(a, x): a series below a + 1, a continued fraction above. */
export function regularizedGammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const front = Math.exp(-x + a * Math.log(x) - logGamma(a));
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < MAX_ITER; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    return Math.max(0, 1 - front * sum);
  }
  // Lentz's method for the continued fraction of Q.
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPS) break;
  }
  return Math.min(1, front * h);
}
