import { z } from 'zod';
import { histogramSchema } from './histogram.js';
import { modelRefSchema } from './model-metadata.js';
import { deviceIdSchema } from './topics.js';

const count = z.number().int().nonnegative();

export const cameraWindowSchema = z.object({
  cameraId: z.string().min(1).max(64),
  framesReceived: count,
  framesInferred: count,
  /** frames replaced by a newer one before inference could take them */
  framesDropped: count,
  inferenceErrors: count,
  /** top-1 label counts; labels are the active model's */
  classCounts: z.record(z.string().min(1).max(64), count),
  confidence: histogramSchema,
  latencyMs: histogramSchema,
});
export type CameraWindow = z.infer<typeof cameraWindowSchema>;

/**
 * Statistics of one time window on one device, published at QoS 1 on its
 * `telemetry` topic. `seq` grows by one per window and survives restarts,
 * so ingestion is idempotent on (deviceId, seq) and gaps are visible.
 */
export const telemetryWindowSchema = z
  .object({
    deviceId: deviceIdSchema,
    seq: z.number().int().nonnegative(),
    windowStart: z.number().int().nonnegative(),
    windowEnd: z.number().int().nonnegative(),
    model: modelRefSchema.nullable(),
    cameras: z.array(cameraWindowSchema).max(64),
  })
  .refine((w) => w.windowEnd >= w.windowStart, { message: 'windowEnd must not be before windowStart', path: ['windowEnd'] });
export type TelemetryWindow = z.infer<typeof telemetryWindowSchema>;
