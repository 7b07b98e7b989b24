import { createHash } from 'node:crypto';
import type { RolloutStage } from './rollout-spec.js';

/**
 * A device's place in a rollout, uniform in [0, 1): the first 52 bits of
 * sha256("rolloutId:deviceId"). Another rollout orders the fleet
 * differently, so the same boxes are not always the canaries.
 */
export function cohortHash(rolloutId: string, deviceId: string): number {
  const hex = createHash('sha256').update(`${rolloutId}:${deviceId}`).digest('hex').slice(0, 13);
  return Number.parseInt(hex, 16) / 2 ** 52;
}

/** How many of `targetSize` devices stage `stage` reaches at least (stages are cumulative). */
export function stageSize(stage: RolloutStage, targetSize: number): number {
  if (stage.count !== undefined) return Math.min(stage.count, targetSize);
  return Math.min(targetSize, Math.ceil(((stage.percent ?? 0) / 100) * targetSize - 1e-9));
}

export interface RankedDevice {
  deviceId: string;
  hash: number;
}

/** The target's devices in cohort order: by hash, then id (a tie is one in 2^52). */
export function rankDevices(rolloutId: string, deviceIds: readonly string[]): RankedDevice[] {
  return deviceIds
    .map((deviceId) => ({ deviceId, hash: cohortHash(rolloutId, deviceId) }))
    .sort((a, b) => a.hash - b.hash || (a.deviceId < b.deviceId ? -1 : 1));
}

/**
 * The devices stage `stage` covers: every device whose hash is below the
 * stage's fraction, topped up from the lowest hashes to the stage's size
 * (a 1 % stage of 50 devices is one device, not likely none). A stage's
 * devices stay in every later stage, and a device that joins the target
 * falls in the stage its hash says.
 */
export function stageCohort(ranked: readonly RankedDevice[], stage: RolloutStage): RankedDevice[] {
  const bySize = stageSize(stage, ranked.length);
  const fraction = stage.percent !== undefined ? stage.percent / 100 : 0;
  let n = bySize;
  while (n < ranked.length && (ranked[n] as RankedDevice).hash < fraction) n++;
  return ranked.slice(0, n);
}
