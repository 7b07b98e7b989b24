import { histogramCount, histogramQuantile, type Histogram } from '@perch/shared';
import type { CohortStats } from './cohort-stats.js';
import type { PhaseEvidence } from './cohort-telemetry.js';
import { chiSquareHomogeneity, jensenShannonDivergence, latencyRegressed, type LabelCounts } from './gate-math.js';
import type { RolloutGates } from './rollout-spec.js';
import type { GateEvaluation, RolloutPhase } from './rollout-store.js';

export interface DeploymentTally {
  /** devices that run what the rollout issued them (candidate active, or challenger running) */
  succeeded: number;
  /** failed, rejected or rolled back by the device */
  failed: number;
  failures: { deviceId: string; phase: string; reason?: string }[];
}

export interface GateInputs {
  gates: RolloutGates;
  phase: RolloutPhase;
  /** devices the rollout issued the phase's state to */
  cohortSize: number;
  deployment: DeploymentTally;
  evidence: PhaseEvidence;
  /** the canary devices' previous model before they joined */
  baseline: CohortStats;
}

const p95 = (h: Histogram) => (histogramCount(h) === 0 ? Number.NaN : histogramQuantile(h, 0.95));
const round = (v: number, digits = 4) => (Number.isFinite(v) ? Math.round(v * 10 ** digits) / 10 ** digits : v);
const ratio = (num: number, den: number) => (den > 0 ? num / den : Number.NaN);

/** How many devices with data a phase needs before its data gates may pass. */
export function requiredDevices(gates: RolloutGates, cohortSize: number): number {
  return Math.min(cohortSize, Math.max(gates.minDevices, Math.ceil((gates.minDevicePercent / 100) * cohortSize)));
}

/**
 * Every gate of a phase, each with its value, threshold and verdict. Data
 * gates say `wait` until enough devices and frames have reported (never
 * `pass` on too little data); `skip` when there is nothing to compare with
 * (no baseline, no control) or the gate is switched off.
 */
export function evaluateGates(i: GateInputs): GateEvaluation[] {
  const { gates, evidence } = i;
  const shadow = i.phase === 'shadow';
  const out: GateEvaluation[] = [];

  if (gates.deployment) {
    const { failed, succeeded } = i.deployment;
    const percent = i.cohortSize > 0 ? (failed / i.cohortSize) * 100 : 0;
    const tooMany = percent > gates.deployment.maxFailurePercent || (gates.deployment.maxFailures !== null && failed > gates.deployment.maxFailures);
    const detail = { failed, succeeded, cohort: i.cohortSize, maxFailures: gates.deployment.maxFailures, failures: i.deployment.failures.slice(0, 20) };
    out.push({ gate: 'deployment', value: round(percent, 2), threshold: gates.deployment.maxFailurePercent, verdict: tooMany ? 'fail' : succeeded + failed === 0 ? 'wait' : 'pass', detail });
  }

  const devicesWithData = shadow ? evidence.shadow.devices.size : evidence.canary.devices.size;
  const needDevices = requiredDevices(gates, i.cohortSize);
  const enoughDevices = devicesWithData >= needDevices && devicesWithData > 0;
  out.push({ gate: 'min-devices', value: devicesWithData, threshold: needDevices, verdict: enoughDevices ? 'pass' : 'wait' });
  const frames = shadow ? evidence.shadow.framesCompared : evidence.canary.framesInferred + evidence.canary.inferenceErrors;
  const enoughFrames = frames >= gates.minFrames;
  out.push({ gate: 'min-frames', value: frames, threshold: gates.minFrames, verdict: enoughFrames ? 'pass' : 'wait' });
  const enough = enoughDevices && enoughFrames;
  const judge = (failed: boolean): GateEvaluation['verdict'] => (!enough ? 'wait' : failed ? 'fail' : 'pass');

  if (gates.errorRate) {
    const rate = shadow
      ? ratio(evidence.shadow.errors, evidence.shadow.framesCompared + evidence.shadow.errors)
      : ratio(evidence.canary.inferenceErrors, evidence.canary.framesInferred + evidence.canary.inferenceErrors);
    out.push({ gate: 'error-rate', value: round(rate), threshold: gates.errorRate.max, verdict: Number.isNaN(rate) ? 'wait' : judge(rate > gates.errorRate.max) });
  }

  if (gates.latency) {
    const [candidate, reference, against] = shadow
      ? [evidence.shadow.challengerMs, evidence.shadow.championMs, 'champion, same frames']
      : [evidence.canary.latency, i.baseline.latency, 'previous model, same devices'];
    const c = p95(candidate);
    const r = p95(reference);
    const value = ratio(c, r);
    // Specs stored before the floor existed have none: judged as they were.
    const floorMs = gates.latency.minIncreaseMs ?? 0;
    const detail = { candidateP95Ms: round(c, 2), referenceP95Ms: round(r, 2), increaseMs: round(c - r, 2), minIncreaseMs: floorMs, against };
    out.push(
      Number.isNaN(r) || histogramCount(reference) === 0
        ? { gate: 'latency-p95-ratio', value: null, threshold: gates.latency.maxP95Ratio, verdict: 'skip', detail: { ...detail, why: 'no reference latency' } }
        : { gate: 'latency-p95-ratio', value: round(value, 3), threshold: gates.latency.maxP95Ratio, verdict: Number.isNaN(c) ? 'wait' : judge(latencyRegressed(c, r, gates.latency.maxP95Ratio, floorMs)), detail },
    );
  }

  if (gates.skippedFrames && !shadow) {
    const rate = ratio(evidence.canary.framesDropped, evidence.canary.framesReceived);
    const base = i.baseline.framesReceived > 0 ? i.baseline.framesDropped / i.baseline.framesReceived : 0;
    const increase = rate - base;
    out.push({
      gate: 'skipped-frames',
      value: round(increase),
      threshold: gates.skippedFrames.maxIncrease,
      verdict: Number.isNaN(rate) ? 'wait' : judge(increase > gates.skippedFrames.maxIncrease),
      detail: { rate: round(rate), baselineRate: round(base) },
    });
  }

  if (gates.predictionDrift) out.push(...driftGates(i, gates.predictionDrift, frames, enough, judge));

  if (shadow && gates.shadowAgreement) {
    const agreement = ratio(evidence.shadow.agreed, evidence.shadow.framesCompared);
    out.push({ gate: 'shadow-agreement', value: round(agreement), threshold: gates.shadowAgreement.min, verdict: Number.isNaN(agreement) ? 'wait' : judge(agreement < gates.shadowAgreement.min) });
  }
  return out;
}

/** The candidate's top-1 labels against a reference: the control cohort, else the same devices before, else (shadow) the champion on the same frames. */
function referenceLabels(i: GateInputs): { candidate: LabelCounts; reference: LabelCounts | null; against: string } {
  const { evidence, gates } = i;
  if (i.phase === 'shadow') return { candidate: evidence.shadow.challengerLabels, reference: evidence.shadow.championLabels, against: 'champion, same frames' };
  const controlFrames = evidence.control.framesInferred;
  if (controlFrames >= gates.minFrames) return { candidate: evidence.canary.classCounts, reference: evidence.control.classCounts, against: 'control cohort' };
  if (i.baseline.framesInferred >= gates.minFrames) return { candidate: evidence.canary.classCounts, reference: i.baseline.classCounts, against: 'previous model, same devices' };
  return { candidate: evidence.canary.classCounts, reference: null, against: 'none' };
}

function driftGates(
  i: GateInputs,
  cfg: NonNullable<RolloutGates['predictionDrift']>,
  frames: number,
  enough: boolean,
  judge: (failed: boolean) => GateEvaluation['verdict'],
): GateEvaluation[] {
  const { candidate, reference, against } = referenceLabels(i);
  if (reference === null) {
    const detail = { why: 'no reference distribution: no control cohort or baseline with enough frames' };
    return [
      { gate: 'prediction-js', value: null, threshold: cfg.maxJensenShannon, verdict: 'skip', detail },
      { gate: 'prediction-chi-square', value: null, threshold: cfg.chiSquareAlpha, verdict: 'skip', detail },
    ];
  }
  const js = jensenShannonDivergence(candidate, reference);
  const chi = chiSquareHomogeneity(candidate, reference);
  // With many frames every small shift is significant: past chiSquareMaxFrames the divergence alone decides.
  const chiApplies = frames <= cfg.chiSquareMaxFrames;
  return [
    { gate: 'prediction-js', value: round(js), threshold: cfg.maxJensenShannon, verdict: Number.isNaN(js) ? 'wait' : judge(js > cfg.maxJensenShannon), detail: { against } },
    {
      gate: 'prediction-chi-square',
      value: chi.pValue,
      threshold: cfg.chiSquareAlpha,
      verdict: !chiApplies ? 'skip' : judge(chi.pValue < cfg.chiSquareAlpha),
      detail: { against, statistic: round(chi.statistic, 3), degreesOfFreedom: chi.degreesOfFreedom, ...(chiApplies ? {} : { why: `over ${cfg.chiSquareMaxFrames} frames: Jensen-Shannon decides` }) },
    },
  ];
}

export type StageDecision = { verdict: 'pass' } | { verdict: 'wait' } | { verdict: 'fail'; reason: string };

const describe = (g: GateEvaluation) => `${g.gate} ${g.value ?? 'n/a'} (threshold ${g.threshold ?? 'n/a'})`;

/**
 * A phase passes when every gate passes (or is skipped) and its soak is
 * over; any failing gate fails it at once; waiting for data past the
 * deadline fails it too.
 */
export function decide(evaluations: readonly GateEvaluation[], soakOver: boolean, deadlinePassed: boolean): StageDecision {
  const failed = evaluations.filter((g) => g.verdict === 'fail');
  if (failed.length > 0) return { verdict: 'fail', reason: `gate failed: ${failed.map(describe).join('; ')}` };
  const waiting = evaluations.filter((g) => g.verdict === 'wait');
  if (waiting.length === 0 && soakOver) return { verdict: 'pass' };
  if (waiting.length > 0 && deadlinePassed) return { verdict: 'fail', reason: `insufficient data past the deadline: ${waiting.map(describe).join('; ')}` };
  return { verdict: 'wait' };
}

