import { z } from 'zod';

const labelSchema = z.string().min(1).max(64);

/**
 * Detection events: when a label counts as having appeared on a camera, how
 * long it must be missing to have ended, and where the snapshots go.
 * Every key has a default, so `events: {}` (or no key) means "on".
 */
export const eventsConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** a frame counts for a label only when its top-1 confidence is at least this */
    minConfidence: z.number().min(0).max(1).default(0.6),
    /** consecutive frames a label must be seen on before it has appeared: one odd frame is not an event */
    debounceFrames: z.number().int().min(1).max(1000).default(3),
    /** and for at least this long, from its first frame (0: the frames alone decide) */
    appearMs: z.number().int().min(0).max(3_600_000).default(0),
    /** how long a label must be missing before its event ends */
    disappearMs: z.number().int().min(0).max(3_600_000).default(3000),
    /** while a label stays, an `update` this often */
    updateIntervalMs: z.number().int().min(100).max(86_400_000).default(30_000),
    /** labels that never make events, e.g. a model's "empty" class */
    ignoreLabels: z.array(labelSchema).max(1000).default([]),
    snapshots: z
      .object({
        enabled: z.boolean().default(true),
        /** default: <dataDir>/snapshots */
        dir: z.string().min(1).optional(),
        /** the oldest snapshot is deleted when there would be more */
        maxFiles: z.number().int().min(1).max(1_000_000).default(500),
        /** JPEG quality, 1-100 */
        quality: z.number().int().min(1).max(100).default(80),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

export type EventsFileConfig = z.infer<typeof eventsConfigSchema>;

/** The events config with the snapshot folder resolved to an absolute path. */
export interface EventsConfig extends Omit<EventsFileConfig, 'snapshots'> {
  snapshots: { enabled: boolean; dir: string; maxFiles: number; quality: number };
}
