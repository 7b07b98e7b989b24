import { deviceIdSchema, formatZodError, modelNameSchema, modelVersionSchema } from '@perch/shared';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { labelSchema } from '../identity/device-labels.js';

/**
 * Which devices a rollout is for, in the device selector's terms
 * (store/device-label-store.ts): `tags` keeps devices with every tag,
 * `groups` devices in any group, `deviceIds` the devices named; each list
 * given narrows the selection; none given selects the whole fleet.
 */
export const rolloutTargetSchema = z
  .object({
    tags: z.array(labelSchema).max(64).optional(),
    groups: z.array(labelSchema).min(1).max(64).optional(),
    deviceIds: z.array(deviceIdSchema).min(1).max(100_000).optional(),
  })
  .strict();
export type RolloutTarget = z.infer<typeof rolloutTargetSchema>;

/**
 * One stage: how much of the target it reaches in all (stages are
 * cumulative: 1 % -> 10 % means ten percent after the second), and how long
 * its gates must keep passing before the next stage starts.
 */
export const rolloutStageSchema = z
  .object({
    percent: z.number().gt(0).max(100).optional(),
    count: z.number().int().positive().optional(),
    soakSeconds: z.number().nonnegative().max(30 * 24 * 3600),
    /** shadow-then-replace: how long the stage's new devices run the candidate as challenger first; the spec's `shadow.soakSeconds` when absent */
    shadowSoakSeconds: z.number().nonnegative().max(30 * 24 * 3600).optional(),
  })
  .strict()
  .refine((s) => (s.percent === undefined) !== (s.count === undefined), { message: 'give percent or count, not both' });
export type RolloutStage = z.infer<typeof rolloutStageSchema>;

// Each gate group may be null to switch it off.
const deploymentGate = z
  .object({
    /** failures and rejections, in percent of the cohort devices that finished deploying */
    maxFailurePercent: z.number().min(0).max(100).default(10),
    /** failures and rejections in all; null: only the percentage counts */
    maxFailures: z.number().int().nonnegative().nullable().default(null),
  })
  .strict();
const errorRateGate = z.object({ max: z.number().min(0).max(1).default(0.02) }).strict();
const latencyGate = z
  .object({
    /** the candidate's p95 inference time over the same devices' p95 on their previous model... */
    maxP95Ratio: z
      .number()
      .gt(1)
      .default(1.5)
      .describe("the most the candidate's p95 latency may be over the previous model's (same devices; in shadow the champion's on the same frames); past it the gate fails when the increase also exceeds minIncreaseMs"),
    /** ...and it is slower by more than this: a sub-millisecond model's ratio is mostly jitter */
    minIncreaseMs: z
      .number()
      .nonnegative()
      .max(60_000)
      .default(2)
      .describe('the p95 increase in ms the ratio must also exceed to fail the gate, so jitter on a sub-millisecond model does not; 0 judges the ratio alone'),
    /** how far back before a device joined its previous model's windows are taken as its baseline */
    baselineSeconds: z.number().int().positive().default(3600),
  })
  .strict();
const skippedFramesGate = z
  .object({
    /** the share of frames skipped (dropped before inference) may grow by this much over the same devices' baseline */
    maxIncrease: z.number().min(0).max(1).default(0.1),
  })
  .strict();
const predictionDriftGate = z
  .object({
    /** Jensen-Shannon divergence (base 2, 0..1) of top-1 labels, canary against control */
    maxJensenShannon: z.number().gt(0).max(1).default(0.1),
    /** chi-square test of the same counts: fails below this p-value... */
    chiSquareAlpha: z.number().gt(0).lt(1).default(0.001),
    /** ...while the canary has at most this many frames; above, every small shift is significant and JS alone decides */
    chiSquareMaxFrames: z.number().int().positive().default(1000),
  })
  .strict();
const shadowAgreementGate = z.object({ min: z.number().min(0).max(1).default(0.9) }).strict();

export const rolloutGatesSchema = z
  .object({
    /** devices with candidate telemetry before data gates may pass: at least this many... */
    minDevices: z.number().int().positive().default(1),
    /** ...and this percent of the cohort; both capped at the cohort's size */
    minDevicePercent: z.number().min(0).max(100).default(50),
    /** frames the candidate inferred (or compared, in shadow) over the cohort before data gates may pass */
    minFrames: z.number().int().positive().default(200),
    /** waiting for data longer than this past the soak fails the stage; null waits for ever */
    insufficientDataDeadlineSeconds: z.number().positive().nullable().default(null),
    deployment: deploymentGate.nullable().prefault({}),
    errorRate: errorRateGate.nullable().prefault({}),
    latency: latencyGate.nullable().prefault({}),
    skippedFrames: skippedFramesGate.nullable().prefault({}),
    predictionDrift: predictionDriftGate.nullable().prefault({}),
    shadowAgreement: shadowAgreementGate.nullable().prefault({}),
  })
  .strict();
export type RolloutGates = z.infer<typeof rolloutGatesSchema>;

export const ROLLOUT_MODES = ['replace', 'shadow-then-replace'] as const;
export type RolloutMode = (typeof ROLLOUT_MODES)[number];

export const rolloutSpecSchema = z
  .object({
    name: z.string().trim().min(1).max(128).optional(),
    model: z.object({ name: modelNameSchema, version: modelVersionSchema }).strict(),
    target: rolloutTargetSchema.default({}),
    stages: z.array(rolloutStageSchema).min(1).max(32),
    mode: z.enum(ROLLOUT_MODES).default('replace'),
    /** shadow-then-replace: the challenger's share of frames, and its default soak per stage */
    shadow: z
      .object({ sampleRate: z.number().gt(0).max(1).default(0.25), soakSeconds: z.number().nonnegative().max(30 * 24 * 3600).default(600) })
      .strict()
      .prefault({}),
    gates: rolloutGatesSchema.prefault({}),
    /** what a failed gate does: stop where it is, or put every device of the rollout back on its previous model */
    onFail: z.enum(['pause', 'rollback']).default('rollback'),
    /** false: stored as a draft, started by `resume` */
    start: z.boolean().default(true),
  })
  .strict()
  .superRefine((spec, ctx) => {
    // Stages are cumulative: each reaches at least as far as the one before, in the same unit.
    const units = new Set(spec.stages.map((s) => (s.percent !== undefined ? 'percent' : 'count')));
    if (units.size > 1) ctx.addIssue({ code: 'custom', path: ['stages'], message: 'give every stage in percent, or every stage as a count' });
    spec.stages.forEach((s, i) => {
      const prev = spec.stages[i - 1];
      if (!prev) return;
      const here = s.percent ?? s.count ?? 0;
      const before = prev.percent ?? prev.count ?? 0;
      if (here < before) ctx.addIssue({ code: 'custom', path: ['stages', i], message: 'stages are cumulative: each must reach at least as far as the one before' });
    });
  });
export type RolloutSpec = z.infer<typeof rolloutSpecSchema>;
export type RolloutSpecInput = z.input<typeof rolloutSpecSchema>;

export class RolloutSpecError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'RolloutSpecError';
  }
}

export function parseRolloutSpec(value: unknown): RolloutSpec {
  const r = rolloutSpecSchema.safeParse(value);
  if (r.success) return r.data;
  const first = r.error.issues[0];
  throw new RolloutSpecError(formatZodError(r.error), first && first.path.length > 0 ? first.path.join('.') : undefined);
}

/** A rollout spec from YAML text (JSON is YAML too). */
export function parseRolloutSpecYaml(text: string, source = 'rollout spec'): RolloutSpec {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new RolloutSpecError(`${source}: not valid YAML: ${(err as Error).message}`);
  }
  return parseRolloutSpec(raw);
}

/** The device selector a target means. */
export function selectorOf(target: RolloutTarget): { ids?: string[]; tags?: string[]; groups?: string[] } {
  return {
    ...(target.deviceIds ? { ids: target.deviceIds } : {}),
    ...(target.tags ? { tags: target.tags } : {}),
    ...(target.groups ? { groups: target.groups } : {}),
  };
}

/** How long stage `i` soaks in a phase. */
export function soakSecondsOf(spec: RolloutSpec, stageIndex: number, phase: 'shadow' | 'replace'): number {
  const stage = spec.stages[stageIndex] as RolloutStage;
  return phase === 'shadow' ? (stage.shadowSoakSeconds ?? spec.shadow.soakSeconds) : stage.soakSeconds;
}
