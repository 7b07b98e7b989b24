import { z } from 'zod';

/**
 * Fixed-bin mergeable histograms. The bin edges are part of the contract: a
 * histogram names its spec, so windows from any device add up bin by bin into
 * fleet views and drift tests. Changing edges means a new spec id, never an
 * edit of an existing one.
 *
 * With edges e0 < e1 < ... < e(k-1) there are k+1 bins:
 * bin 0 = (-inf, e0), bin i = [e(i-1), e(i)), bin k = [e(k-1), +inf).
 */
export interface HistogramSpec {
  id: string;
  unit: string;
  edges: readonly number[];
}

const confidenceEdges = Array.from({ length: 19 }, (_, i) => Math.round((i + 1) * 5) / 100);

/** from, from + step, ... up to and including to */
function steps(from: number, to: number, step: number): number[] {
  return Array.from({ length: Math.round((to - from) / step) + 1 }, (_, i) => from + i * step);
}

export const HISTOGRAM_SPECS = {
  /** top-1 confidence, 20 bins of 0.05 over [0, 1] */
  'confidence.v1': { id: 'confidence.v1', unit: 'probability', edges: confidenceEdges },
  /** milliseconds, roughly log-spaced from 1 ms to 10 s */
  'latency-ms.v1': {
    id: 'latency-ms.v1',
    unit: 'ms',
    edges: [1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000],
  },
  /**
   * milliseconds, 1 ms bins up to 20 ms and about 10 % wide above that, to 10 s.
   * Inference on a box takes a few to a few tens of ms: v1's 5 ms bins there
   * could not tell a p95 of 15.5 ms from one of 19.5 ms.
   */
  'latency-ms.v2': {
    id: 'latency-ms.v2',
    unit: 'ms',
    edges: [
      0.25, 0.5, 0.75,
      ...steps(1, 20, 1),
      ...steps(22, 50, 2),
      ...steps(55, 100, 5),
      ...steps(110, 200, 10),
      ...steps(225, 500, 25),
      ...steps(550, 1000, 50),
      1250, 1500, 1750, 2000, 2500, 3000, 4000, 5000, 7500, 10000,
    ],
  },
} as const satisfies Record<string, HistogramSpec>;

export type HistogramSpecId = keyof typeof HISTOGRAM_SPECS;
/** The latency spec agents publish now; the control plane still reads v1 from older agents. */
export const LATENCY_SPEC = 'latency-ms.v2' satisfies HistogramSpecId;
const specIds = Object.keys(HISTOGRAM_SPECS) as [HistogramSpecId, ...HistogramSpecId[]];

export const histogramSchema = z
  .object({
    spec: z.enum(specIds),
    // One loop over the bins rather than a schema per element: a telemetry window carries a few hundred
    // bins and the control plane parses thousands of windows a second (about half the cost of the window).
    counts: z.array(z.number()).refine((c) => c.every((n) => Number.isSafeInteger(n) && n >= 0), 'bin counts must be whole numbers >= 0'),
    /** sum of observed values, so means merge exactly too */
    sum: z.number().finite(),
  })
  .superRefine((h, ctx) => {
    const want = HISTOGRAM_SPECS[h.spec].edges.length + 1;
    if (h.counts.length !== want) {
      ctx.addIssue({ code: 'custom', path: ['counts'], message: `spec ${h.spec} has ${want} bins, got ${h.counts.length}` });
    }
  });

export type Histogram = z.infer<typeof histogramSchema>;

export function emptyHistogram(spec: HistogramSpecId): Histogram {
  return { spec, counts: new Array<number>(HISTOGRAM_SPECS[spec].edges.length + 1).fill(0), sum: 0 };
}

export function binIndex(spec: HistogramSpecId, value: number): number {
  const edges = HISTOGRAM_SPECS[spec].edges;
  // Binary search for the first edge > value.
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((edges[mid] as number) <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function observe(h: Histogram, value: number, times = 1): void {
  if (!Number.isFinite(value)) throw new RangeError(`histogram ${h.spec}: value must be finite, got ${value}`);
  const i = binIndex(h.spec, value);
  h.counts[i] = (h.counts[i] ?? 0) + times;
  h.sum += value * times;
}

export function histogramCount(h: Histogram): number {
  let n = 0;
  for (const c of h.counts) n += c;
  return n;
}

/** Adds b into a copy of a; both must share a spec. */
export function mergeHistograms(a: Histogram, b: Histogram): Histogram {
  if (a.spec !== b.spec) throw new Error(`cannot merge histogram ${a.spec} with ${b.spec}`);
  return { spec: a.spec, counts: a.counts.map((c, i) => c + (b.counts[i] ?? 0)), sum: a.sum + b.sum };
}

/**
 * Estimates a quantile by linear interpolation inside the bin that holds it.
 * The open-ended first and last bins report their finite edge. NaN when empty.
 */
export function histogramQuantile(h: Histogram, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
  const total = histogramCount(h);
  if (total === 0) return Number.NaN;
  const edges = HISTOGRAM_SPECS[h.spec].edges;
  const target = q * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i] ?? 0;
    if (c > 0 && seen + c >= target) {
      const lo = edges[i - 1];
      const hi = edges[i];
      if (lo === undefined) return hi as number;
      if (hi === undefined) return lo;
      return lo + ((target - seen) / c) * (hi - lo);
    }
    seen += c;
  }
  return edges[edges.length - 1] as number;
}

/**
 * The bin that holds the q-quantile, as [lower edge, upper edge) — what the
 * histogram can say for sure, where histogramQuantile interpolates. Open
 * ends are -Infinity / +Infinity; NaN for an empty histogram.
 */
export function histogramQuantileBin(h: Histogram, q: number): [number, number] {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
  const total = histogramCount(h);
  if (total === 0) return [Number.NaN, Number.NaN];
  const edges = HISTOGRAM_SPECS[h.spec].edges;
  const target = q * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i] ?? 0;
    if (c > 0 && seen + c >= target) return [edges[i - 1] ?? Number.NEGATIVE_INFINITY, edges[i] ?? Number.POSITIVE_INFINITY];
    seen += c;
  }
  return [edges[edges.length - 1] as number, Number.POSITIVE_INFINITY];
}
