import { z } from 'zod';
import { histogramSchema } from './histogram.js';
import { modelRefSchema } from './model-metadata.js';
import { cameraErrorKindSchema, cameraHealthSchema } from './reported-state.js';
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
  /**
   * How old a frame is (ms, `latency-ms.v2`; `v1` from older agents) at each step. `capture`: how
   * late it reached the agent by its stream's own timestamps, above the
   * quickest frame since the stream started (decoding, backlogs, network
   * stalls; absent where ffmpeg cannot log timestamps). `inference`: from
   * its arrival until inference starts on it. `publish`: from its arrival
   * until an event about it goes to the outbox.
   */
  frameAgeMs: z
    .object({ capture: histogramSchema.optional(), inference: histogramSchema, publish: histogramSchema.optional() })
    .optional(),
  /** camera health in this window: state at the end, and what happened during it */
  health: z
    .object({
      state: cameraHealthSchema,
      restarts: count,
      stalls: count,
      errorKind: cameraErrorKindSchema.optional(),
      lastError: z.string().max(1000).optional(),
    })
    .optional(),
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
    /** main-thread event-loop delay over the window (ms, `latency-ms.v2`; `v1` from older agents): the agent stays responsive */
    eventLoopLagMs: histogramSchema.optional(),
    /**
     * The store-and-forward outbox at the time the window was closed: records
     * waiting, and records its drop policy discarded (in this window and since
     * the outbox was created), so a loss is always visible.
     */
    outbox: z
      .object({ pending: count, droppedInWindow: count, droppedTotal: count })
      .optional(),
  })
  .refine((w) => w.windowEnd >= w.windowStart, { message: 'windowEnd must not be before windowStart', path: ['windowEnd'] });
export type TelemetryWindow = z.infer<typeof telemetryWindowSchema>;
