import { emptyHistogram, LATENCY_SPEC, mergeHistograms, type Histogram, type ShadowWindow, type TelemetryWindow } from '@perch/shared';
import { addFrameTotals } from '../telemetry/frame-totals.js';
import { addLabelCounts, emptyMap } from '../telemetry/label-counts.js';

/** What a set of devices' windows add up to: the inputs of the data gates. */
export interface CohortStats {
  devices: Set<string>;
  windows: number;
  framesReceived: number;
  framesInferred: number;
  framesDropped: number;
  inferenceErrors: number;
  classCounts: Record<string, number>;
  /** all cameras' inference times, `latency-ms.v2` only (older agents' v1 bins cannot be added to them) */
  latency: Histogram;
}

/** Champion against challenger over a set of devices' windows (shadow mode). */
export interface ShadowStats {
  devices: Set<string>;
  framesCompared: number;
  agreed: number;
  errors: number;
  championLabels: Record<string, number>;
  challengerLabels: Record<string, number>;
  championMs: Histogram;
  challengerMs: Histogram;
}

export function emptyCohortStats(): CohortStats {
  return { devices: new Set(), windows: 0, framesReceived: 0, framesInferred: 0, framesDropped: 0, inferenceErrors: 0, classCounts: emptyMap<number>(), latency: emptyHistogram(LATENCY_SPEC) };
}

export function emptyShadowStats(): ShadowStats {
  return {
    devices: new Set(),
    framesCompared: 0,
    agreed: 0,
    errors: 0,
    championLabels: emptyMap<number>(),
    challengerLabels: emptyMap<number>(),
    championMs: emptyHistogram(LATENCY_SPEC),
    challengerMs: emptyHistogram(LATENCY_SPEC),
  };
}

function addHistogram(into: Histogram, h: Histogram): Histogram {
  return h.spec === into.spec ? mergeHistograms(into, h) : into;
}

export function addWindow(s: CohortStats, w: TelemetryWindow): void {
  s.devices.add(w.deviceId);
  s.windows++;
  for (const cam of w.cameras) {
    addFrameTotals(s, cam);
    s.latency = addHistogram(s.latency, cam.latencyMs);
  }
}

export function addShadow(s: ShadowStats, deviceId: string, w: ShadowWindow): void {
  s.devices.add(deviceId);
  s.framesCompared += w.framesCompared;
  s.agreed += w.agreed;
  s.errors += w.errors;
  for (const pair of w.confusion) {
    s.championLabels[pair.champion] = (s.championLabels[pair.champion] ?? 0) + pair.count;
    s.challengerLabels[pair.challenger] = (s.challengerLabels[pair.challenger] ?? 0) + pair.count;
  }
  s.championMs = addHistogram(s.championMs, w.championInferenceMs);
  s.challengerMs = addHistogram(s.challengerMs, w.challengerInferenceMs);
}

export function mergeCohortStats(a: CohortStats, b: CohortStats): CohortStats {
  const out = emptyCohortStats();
  for (const s of [a, b]) {
    for (const d of s.devices) out.devices.add(d);
    out.windows += s.windows;
    addFrameTotals(out, s);
    out.latency = addHistogram(out.latency, s.latency);
  }
  return out;
}

export function mergeShadowStats(a: ShadowStats, b: ShadowStats): ShadowStats {
  const out = emptyShadowStats();
  for (const s of [a, b]) {
    for (const d of s.devices) out.devices.add(d);
    out.framesCompared += s.framesCompared;
    out.agreed += s.agreed;
    out.errors += s.errors;
    addLabelCounts(out.championLabels, s.championLabels);
    addLabelCounts(out.challengerLabels, s.challengerLabels);
    out.championMs = addHistogram(out.championMs, s.championMs);
    out.challengerMs = addHistogram(out.challengerMs, s.challengerMs);
  }
  return out;
}

/** A device's baseline as stored with its assignment: no device set, plain JSON. */
export type BaselineStats = Omit<CohortStats, 'devices'>;

export function toBaseline(s: CohortStats): BaselineStats {
  const { devices: _devices, ...rest } = s;
  return { ...rest, classCounts: { ...rest.classCounts } };
}

export function fromBaseline(b: BaselineStats, deviceId: string): CohortStats {
  const s = emptyCohortStats();
  s.devices.add(deviceId);
  return mergeCohortStats(s, { ...b, devices: new Set() });
}
