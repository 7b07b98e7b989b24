import { z } from 'zod';
import { DROP_POLICIES } from './outbox-store.js';

const MiB = 1024 * 1024;

/**
 * The store-and-forward outbox. Every key has a default, so no `outbox` key
 * means 64 MiB of records, the oldest dropped first when full.
 */
export const outboxConfigSchema = z
  .object({
    /** payload bytes kept while the broker is unreachable (the file stays below 2x this plus a few MiB) */
    maxBytes: z.number().int().min(64 * 1024).max(64 * 1024 * MiB).default(64 * MiB),
    /** records kept, when set */
    maxRecords: z.number().int().min(1).optional(),
    /** what goes when the outbox is full: the oldest records, or the one arriving */
    dropPolicy: z.enum(DROP_POLICIES).default('drop-oldest'),
    /** QoS 1 publishes awaiting their PUBACK at a time */
    inFlight: z.number().int().min(1).max(1000).default(32),
    /** how long a shutdown waits for the broker to acknowledge what is stored (the CLI exits after 10 s whatever happens) */
    flushTimeoutMs: z.number().int().min(0).max(8000).default(5000),
  })
  .strict()
  .prefault({});

export type OutboxConfig = z.infer<typeof outboxConfigSchema>;
