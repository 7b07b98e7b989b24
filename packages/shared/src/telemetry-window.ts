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

const labelSchema = z.string().min(1).max(64);

/** The most (champion, challenger) label pairs a window lists; the rest are counted in `confusionOverflow`. */
export const SHADOW_CONFUSION_MAX_PAIRS = 256;

/**
 * Champion against challenger over one window (shadow mode): both ran on
 * the same sample of the champion's frames. `agreed / framesCompared` is
 * the agreement of their top-1 labels; `confusion` lists the (champion,
 * challenger) top-1 label pairs with their counts, most frequent first, so
 * windows add up pair by pair. Only the champion's answers drive events and
 * class counts.
 */
export const shadowWindowSchema = z
  .object({
    /** the challenger; a window covers one challenger and one sample rate */
    model: modelRefSchema,
    sampleRate: z.number().gt(0).max(1),
    /** sampled frames both models answered */
    framesCompared: count,
    /** of those, frames whose top-1 labels were equal */
    agreed: count,
    /** sampled frames not run because the challenger was still busy with an earlier one: the champion never waits for it */
    skippedBusy: count,
    /** sampled frames the challenger failed on (errors, non-finite outputs) */
    errors: count,
    confusion: z
      .array(z.object({ champion: labelSchema, challenger: labelSchema, count: z.number().int().positive() }))
      .max(SHADOW_CONFUSION_MAX_PAIRS),
    /** compared frames whose label pair is not listed in `confusion` */
    confusionOverflow: count,
    /** each model's run time per frame in its worker, over the compared frames (ms, `latency-ms.v2`) */
    championInferenceMs: histogramSchema,
    challengerInferenceMs: histogramSchema,
    cameras: z.array(z.object({ cameraId: z.string().min(1).max(64), framesCompared: count, agreed: count })).max(64),
  })
  .refine((s) => s.agreed <= s.framesCompared, { message: 'agreed must not exceed framesCompared', path: ['agreed'] })
  .refine((s) => s.confusion.reduce((n, p) => n + p.count, s.confusionOverflow) === s.framesCompared, {
    message: 'confusion counts and confusionOverflow must add up to framesCompared',
    path: ['confusion'],
  });
export type ShadowWindow = z.infer<typeof shadowWindowSchema>;

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
    /** champion against challenger, when a challenger ran in shadow during the window */
    shadow: shadowWindowSchema.optional(),
  })
  .refine((w) => w.windowEnd >= w.windowStart, { message: 'windowEnd must not be before windowStart', path: ['windowEnd'] });
export type TelemetryWindow = z.infer<typeof telemetryWindowSchema>;
