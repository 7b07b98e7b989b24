import { z } from 'zod';
import { deviceIdSchema } from './topics.js';

/**
 * A class appearing (`new`), persisting (`update`) and disappearing (`end`)
 * on one camera, published at QoS 1 on the device's `events` topic. One
 * `eventId` spans the three kinds.
 */
export const detectionEventSchema = z.object({
  deviceId: deviceIdSchema,
  seq: z.number().int().nonnegative(),
  eventId: z.string().min(1).max(64),
  kind: z.enum(['new', 'update', 'end']),
  cameraId: z.string().min(1).max(64),
  label: z.string().min(1).max(64),
  /** highest confidence seen so far in the event */
  topConfidence: z.number().min(0).max(1),
  startedAt: z.number().int().nonnegative(),
  at: z.number().int().nonnegative(),
  /** device-local snapshot name, fetched on demand */
  snapshot: z.string().max(256).optional(),
});
export type DetectionEvent = z.infer<typeof detectionEventSchema>;
