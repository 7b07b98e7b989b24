import { z } from 'zod';
import { modelRefSchema } from './model-metadata.js';
import { deviceIdSchema } from './topics.js';

/** Where the device is on its way to the desired state. */
export const deploymentPhaseSchema = z.enum([
  'idle',
  'downloading',
  'verifying',
  'loading',
  'active',
  /** refused before anything ran: bad signature, replay, bad hash, bad model */
  'rejected',
  /** accepted but could not be done: transfer failed, disk error */
  'failed',
]);
export type DeploymentPhase = z.infer<typeof deploymentPhaseSchema>;

export const cameraStateSchema = z.object({
  cameraId: z.string().min(1).max(64),
  state: z.enum(['starting', 'online', 'offline']),
  framesPerSecond: z.number().nonnegative(),
  restarts: z.number().int().nonnegative(),
  lastError: z.string().max(1000).optional(),
});
export type CameraState = z.infer<typeof cameraStateSchema>;

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
});
export type ReportedState = z.infer<typeof reportedStateSchema>;
