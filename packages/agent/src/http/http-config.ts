import { z } from 'zod';

/** The agent's local HTTP endpoints (/healthz, /metrics, /snapshot/:camera): loopback only unless told otherwise. */
export const httpConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    host: z.string().min(1).default('127.0.0.1'),
    /** 0 picks a free port (tests) */
    port: z.number().int().min(0).max(65535).default(9180),
  })
  .strict()
  .prefault({});

export type HttpConfig = z.infer<typeof httpConfigSchema>;
