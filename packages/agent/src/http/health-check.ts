import { performance } from 'node:perf_hooks';
import type { CameraState, ModelRef } from '@perch/shared';

export interface HealthSources {
  /** `stallTimeoutMs`: the camera's own stall window, after which its ffmpeg is restarted too */
  cameras: readonly { id: string; stallTimeoutMs: number }[];
  activeModel(): ModelRef | null;
  cameraStates(): CameraState[];
  /** performance.now() of the camera's last frame and last inference result */
  lastFrameAt(cameraId: string): number | undefined;
  lastResultAt(cameraId: string): number | undefined;
  /** the link to the control plane, when there is one */
  controlPlane?: () => ControlPlaneLink;
}

/** Reported beside readiness, not in it: a box cut off from its control plane still watches its cameras. */
export interface ControlPlaneLink {
  connected: boolean;
  /** why it cannot log in (credentials refused, a claim refused), if it cannot */
  problem: string | null;
}

export interface CameraHealth {
  id: string;
  ok: boolean;
  state: CameraState['state'];
  stallWindowMs: number;
  lastFrameAgeMs: number | null;
  lastResultAgeMs: number | null;
  reason?: string;
}

export interface HealthReport {
  status: 'ok' | 'unavailable';
  model: ModelRef | null;
  cameras: CameraHealth[];
  /** why the status is not ok, one line per problem */
  reasons: string[];
  controlPlane?: ControlPlaneLink;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Readiness, for /healthz: ok only while a model is active and every camera
 * both delivered a frame and had one inferred within its stall window. A
 * camera that delivers while inference fails is not ready either.
 */
export function checkHealth(src: HealthSources, now: number = performance.now()): HealthReport {
  const model = src.activeModel();
  const reasons: string[] = [];
  if (!model) reasons.push('model: no model active');
  const states = new Map(src.cameraStates().map((s) => [s.cameraId, s]));
  const age = (t: number | undefined) => (t === undefined ? null : Math.max(0, Math.round(now - t)));
  const cameras = src.cameras.map((cam): CameraHealth => {
    const window = cam.stallTimeoutMs;
    const state = states.get(cam.id);
    const frameAge = age(src.lastFrameAt(cam.id));
    const resultAge = age(src.lastResultAt(cam.id));
    let reason: string | undefined;
    const why = state?.lastError !== undefined ? ` (last error: ${state.lastError})` : '';
    if (frameAge === null) reason = `no frame yet${why}`;
    else if (frameAge > window) reason = `no frame for ${seconds(frameAge)} (stall window ${seconds(window)})${why}`;
    else if (resultAge === null || resultAge > window) reason = `frames arrive but none was inferred in the last ${seconds(window)}`;
    if (reason !== undefined) reasons.push(`camera ${cam.id}: ${reason}`);
    return {
      id: cam.id,
      ok: reason === undefined,
      state: state?.state ?? 'offline',
      stallWindowMs: window,
      lastFrameAgeMs: frameAge,
      lastResultAgeMs: resultAge,
      ...(reason !== undefined ? { reason } : {}),
    };
  });
  return { status: reasons.length === 0 ? 'ok' : 'unavailable', model, cameras, reasons, ...(src.controlPlane ? { controlPlane: src.controlPlane() } : {}) };
}
