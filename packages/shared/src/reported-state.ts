import { z } from 'zod';
import { modelRefSchema } from './model-metadata.js';
import { deviceIdSchema } from './topics.js';

/**
 * Where the device is on its way to the desired state:
 * queued -> downloading (with progress) -> verifying -> ready -> activating
 * (a fresh worker loads the model and runs its golden input) -> health-check
 * (the new model runs the cameras and is watched) -> active. It ends early
 * in rejected, failed or rolled-back, with the reason.
 */
export const deploymentPhaseSchema = z.enum([
  /** no model desired */
  'idle',
  /** accepted for work, waiting for the job before it */
  'queued',
  'downloading',
  /** the artifact's hash is being checked against the signed one */
  'verifying',
  /** the model is installed on the device and checked; the switch comes next */
  'ready',
  /** loading in a fresh worker and running the golden input, while the old model still runs */
  'activating',
  /** the new model runs the cameras and is watched (error rate, latency) for the health window */
  'health-check',
  /** running, and it passed its health window (the device's known-good model) */
  'active',
  /** refused before anything ran: bad signature, replay, bad hash, a model that fails to load or fails its golden input */
  'rejected',
  /** accepted but could not be done: transfer failed, disk full ("disk full: ..."), disk error; may succeed when desired again */
  'failed',
  /** the model failed its health window (or the agent restarted inside it) and the device went back to its known-good model; not retried */
  'rolled-back',
]);
export type DeploymentPhase = z.infer<typeof deploymentPhaseSchema>;

/** Why a camera is not delivering, read from ffmpeg's stderr or seen by the supervisor. */
export const cameraErrorKindSchema = z.enum([
  'unauthorized',
  'not-found',
  'refused',
  'timeout',
  'unsupported-codec',
  'invalid-data',
  'resolution-changed',
  'stalled',
  'exited',
  'unknown',
]);
export type CameraErrorKind = z.infer<typeof cameraErrorKindSchema>;

/**
 * online: frames arrive at the configured rate; degraded: frames arrive but
 * with restarts or stalls in the recent past; offline: no frames.
 */
export const cameraHealthSchema = z.enum(['starting', 'online', 'degraded', 'offline']);
export type CameraHealth = z.infer<typeof cameraHealthSchema>;

export const cameraStateSchema = z.object({
  cameraId: z.string().min(1).max(64),
  state: cameraHealthSchema,
  framesPerSecond: z.number().nonnegative(),
  /** ffmpeg restarts since the agent started */
  restarts: z.number().int().nonnegative(),
  /** times no frame arrived within the stall timeout, since the agent started */
  stalls: z.number().int().nonnegative().optional(),
  errorKind: cameraErrorKindSchema.optional(),
  lastError: z.string().max(1000).optional(),
});
export type CameraState = z.infer<typeof cameraStateSchema>;

/**
 * Where the challenger of the desired state stands: preparing (checked
 * against the signed targets, downloaded if not on the device, loaded in a
 * worker of its own and run on its golden input), running in shadow,
 * failed (transfer, disk, its worker died: tried again when the desired
 * state comes again) or rejected (not signed as named, a bad hash, it fails
 * to load or its golden input, or its input cannot be made from the
 * champion's frames). Neither failure touches the champion.
 */
export const shadowPhaseSchema = z.enum(['preparing', 'running', 'failed', 'rejected']);
export type ShadowPhase = z.infer<typeof shadowPhaseSchema>;

export const shadowStatusSchema = z.object({
  /** the desired-state generation that named this challenger */
  generation: z.number().int().nonnegative(),
  target: modelRefSchema,
  phase: shadowPhaseSchema,
  /** the fraction of the champion's frames it runs on */
  sampleRate: z.number().gt(0).max(1),
  reason: z.string().max(2000).optional(),
  at: z.number().int().nonnegative(),
});
export type ShadowStatus = z.infer<typeof shadowStatusSchema>;

/** The device's actual state, published retained on its `reported` topic. */
export const reportedStateSchema = z.object({
  deviceId: deviceIdSchema,
  agentVersion: z.string().max(64),
  at: z.number().int().nonnegative(),
  /** generation of the last desired state the device accepted */
  acceptedGeneration: z.number().int().nonnegative(),
  active: modelRefSchema.nullable(),
  deployment: z.object({
    phase: deploymentPhaseSchema,
    generation: z.number().int().nonnegative(),
    target: modelRefSchema.nullable(),
    progress: z.object({ bytes: z.number().int().nonnegative(), total: z.number().int().nonnegative() }).optional(),
    reason: z.string().max(2000).optional(),
    at: z.number().int().nonnegative(),
  }),
  cameras: z.array(cameraStateSchema).max(64),
  /** the challenger in shadow mode; absent when the desired state names none */
  shadow: shadowStatusSchema.optional(),
});
export type ReportedState = z.infer<typeof reportedStateSchema>;
