import { z } from 'zod';
import { envelopeSchema, signedCommonShape, type Envelope } from './signed-envelope.js';
import { modelTargetSchema } from './model-metadata.js';
import { deviceIdSchema } from './topics.js';

/**
 * What the control plane wants one device to run, signed by the keys of the
 * TUF root's `desired` role and published retained on the device's `desired` topic. The device converges on it whenever it sees it,
 * so a device that was offline catches up by itself. `generation` only grows:
 * a device refuses a generation older than the one it holds (replay).
 */
export const desiredStateSchema = z.object({
  _type: z.literal('desired-state'),
  ...signedCommonShape,
  deviceId: deviceIdSchema,
  generation: z.number().int().positive(),
  issuedAt: z.string().datetime({ offset: true }),
  /**
   * The model to run, as TUF's targets.json lists it; null means run none.
   * The device runs it only when its own verified targets metadata lists the
   * same description (path, length, hashes and custom, all of it).
   */
  active: modelTargetSchema.nullable(),
  /**
   * An explicit, signed rollback: allows a model older than the one running
   * (by its registration time). Without it such a state is refused as a downgrade.
   */
  rollback: z.boolean().optional(),
  /**
   * The challenger: a model run in shadow beside `active` (the champion) on
   * a sample of the champion's frames. Its answers are compared with the
   * champion's and reported, never acted on. Checked against the signed
   * targets exactly as `active` is. Absent or null: no challenger, which is
   * all a state from before shadow mode can mean.
   */
  shadow: modelTargetSchema.nullable().optional(),
  /** the fraction of the champion's frames the challenger runs as well; DEFAULT_SHADOW_SAMPLE_RATE when absent */
  shadowSampleRate: z.number().gt(0).max(1).optional(),
});
/** A challenger runs on a quarter of the champion's frames unless the state says otherwise: CPU stays bounded. */
export const DEFAULT_SHADOW_SAMPLE_RATE = 0.25;

export type DesiredState = z.infer<typeof desiredStateSchema>;
export const signedDesiredStateSchema = envelopeSchema(desiredStateSchema);
export type SignedDesiredState = Envelope<DesiredState>;
