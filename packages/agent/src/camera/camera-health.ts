import type { CameraHealth } from '@perch/shared';

export interface HealthFacts {
  now: number;
  /** the camera is started (ffmpeg running or about to be restarted) */
  running: boolean;
  /** when the current ffmpeg run delivered its first frame; null before that or between runs */
  flowingSince: number | null;
  /** whether any run since start() failed (ended, crashed, stalled) */
  failedBefore: boolean;
  framesPerSecond: number;
  configuredFps: number;
}

export interface HealthPolicy {
  /** how long frames must flow again after a failed run before the camera counts as online */
  recoveryMs: number;
  /** delivering below this share of the configured rate is degraded */
  minRateShare: number;
  /** the rate is only judged after frames flowed this long (the meter's window) */
  rateSettleMs: number;
}

export const DEFAULT_HEALTH_POLICY: HealthPolicy = { recoveryMs: 60_000, minRateShare: 0.5, rateSettleMs: 5000 };

/**
 * online: frames arrive at about the configured rate, with no trouble lately;
 * degraded: frames arrive, but for less than `recoveryMs` since a run failed
 * (a restart or a stall: every incident ends a run), or the rate is well
 * below the configured one; offline: no frames (stopped, failing, waiting to
 * restart); starting: the first run has not delivered yet. Counting the
 * recovery from the first frame, not from the incident, means a camera that
 * took long to come back is still seen to be degraded for a while.
 */
export function cameraHealth(f: HealthFacts, policy: HealthPolicy = DEFAULT_HEALTH_POLICY): CameraHealth {
  if (!f.running) return 'offline';
  if (f.flowingSince === null) return f.failedBefore ? 'offline' : 'starting';
  if (f.failedBefore && f.now - f.flowingSince < policy.recoveryMs) return 'degraded';
  const settled = f.now - f.flowingSince >= policy.rateSettleMs;
  if (settled && f.framesPerSecond < f.configuredFps * policy.minRateShare) return 'degraded';
  return 'online';
}
