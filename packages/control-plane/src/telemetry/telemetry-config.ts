import { z } from 'zod';

/** Days kept; null keeps forever. */
const days = z.number().positive().nullable();

/**
 * The control plane's `telemetry` config. Every key has a default; raw
 * windows are the bulk (one row per device per window: 10,000 devices with
 * 10 s windows make 86 M a day), rollups are what dashboards read.
 */
export const telemetryConfigSchema = z
  .object({
    ingest: z
      .object({
        /** windows per transaction */
        maxBatch: z.number().int().min(1).max(10_000).default(500),
        /** a window waits at most this long (ms) for more to share its batch; while a batch is being written, what arrives waits for it instead */
        flushMs: z.number().int().min(1).max(60_000).default(100),
        /** windows kept for another try while the database refuses writes; beyond this the oldest are given up: left unacknowledged for their devices to send again (embedded broker), or lost and counted (external broker) */
        maxPending: z.number().int().min(1).default(50_000),
        /** write batches on a thread of their own (another core) rather than on the thread that runs MQTT and the API */
        writerThread: z.boolean().default(true),
        /** how often (ms) the rollups, each device's highest seq and last seen are written behind the windows: what the API shows of them is this much behind at most */
        stateFlushMs: z.number().int().min(10).max(60_000).default(5000),
      })
      .strict()
      .refine((i) => i.maxPending >= i.maxBatch, { message: 'maxPending must be at least maxBatch', path: ['maxPending'] })
      .prefault({}),
    /** a sequence gap not filled for this long is reported as confirmed lost (agents replay in order, so a late window comes within minutes of reconnecting) */
    gapGraceSeconds: z.number().min(0).default(600),
    presence: z
      .object({
        /** a device not heard from for this long, and not connected to the embedded broker, is marked offline (reason 'silent'); 3 x the agent's keepalive */
        silentAfterSeconds: z.number().positive().default(90),
        sweepSeconds: z.number().positive().default(15),
      })
      .strict()
      .prefault({}),
    retention: z
      .object({
        rawWindowsDays: days.default(7),
        minuteRollupsDays: days.default(14),
        hourRollupsDays: days.default(400),
        eventsDays: days.default(30),
        /** the audit log (by entry time); a year by default, as audits ask for */
        auditDays: days.default(365),
        /** how often the retention job runs */
        intervalMinutes: z.number().positive().default(10),
        /** rows deleted per transaction */
        batchRows: z.number().int().min(1).max(100_000).default(2000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

export type TelemetryConfig = z.infer<typeof telemetryConfigSchema>;
