import { z } from 'zod';
import { envelopeSchema, signedCommonShape, type Envelope } from './signed-envelope.js';
import { signedModelTargetSchema } from './model-metadata.js';
import { deviceIdSchema } from './topics.js';

/**
 * What the control plane wants one device to run, published retained on the
 * device's `desired` topic. The device converges on it whenever it sees it,
 * so a device that was offline catches up by itself. `generation` only grows:
 * a device refuses a generation older than the one it holds (replay).
 */
export const desiredStateSchema = z.object({
  _type: z.literal('desired-state'),
  ...signedCommonShape,
  deviceId: deviceIdSchema,
  generation: z.number().int().positive(),
  issuedAt: z.string().datetime({ offset: true }),
  /** the model to run; null means run none. Carries the registry's own signed target. */
  active: signedModelTargetSchema.nullable(),
});
export type DesiredState = z.infer<typeof desiredStateSchema>;
export const signedDesiredStateSchema = envelopeSchema(desiredStateSchema);
export type SignedDesiredState = Envelope<DesiredState>;
