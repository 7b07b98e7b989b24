/**
 * What a fleet simulator process (fleet-simulator-process.ts) is given, the
 * commands it takes on stdin and the JSON lines it writes on stdout. The
 * spec goes in a file, not on the command line: ten thousand passwords are
 * over the kernel's limit for one argument, and secrets stay out of `ps`.
 */
import { deviceIdSchema, sha256Schema } from '@perch/shared';
import { z } from 'zod';

const windowShapeSchema = z.object({
  cameras: z.number().int().min(0).max(64),
  labels: z.array(z.string().min(1).max(64)).min(1).max(1000),
  fps: z.number().positive().max(120),
});

export const telemetryLoadSchema = z.object({
  intervalMs: z.number().positive(),
  shape: windowShapeSchema.optional(),
  maxInFlight: z.number().int().min(1).max(1000).optional(),
});

/** What each device reports for a desired state: all run it, or a seeded share fails or rolls back. */
export const desiredPolicySpecSchema = z.object({
  failed: z.number().min(0).max(1).default(0),
  rolledBack: z.number().min(0).max(1).default(0),
  /** a device reports after a delay drawn uniformly from [0, afterMs] */
  afterMs: z.number().int().min(0).default(0),
  seed: z.number().int().default(1),
});

export const fleetProcessSpecSchema = z.object({
  url: z.string().min(1),
  devices: z.array(z.object({ deviceId: deviceIdSchema, password: z.string().min(1).optional() })).min(1),
  claimToken: z.string().min(16).nullable().default(null),
  connectRatePerSecond: z.number().positive().default(200),
  keepaliveSeconds: z.number().int().positive().default(30),
  connectTimeoutMs: z.number().int().positive().default(10_000),
  reconnect: z.object({ minMs: z.number().positive(), maxMs: z.number().positive() }).default({ minMs: 500, maxMs: 30_000 }),
  telemetry: telemetryLoadSchema.nullable().default(null),
  artifact: z
    .object({ sha256: sha256Schema, length: z.number().int().positive(), chunkBytes: z.number().int().positive(), intervalMs: z.number().positive() })
    .nullable()
    .default(null),
  desired: desiredPolicySpecSchema.prefault({}),
  firstSeq: z.number().int().nonnegative().default(0),
  /** a stats line every this many ms, besides those asked for */
  statsEveryMs: z.number().int().positive().default(1000),
  seed: z.number().int().default(1),
});
export type FleetProcessSpec = z.input<typeof fleetProcessSpecSchema>;

/** One command per stdin line; each is answered by a `reply` line with the same id. */
export const fleetCommandSchema = z.discriminatedUnion('cmd', [
  /** power on devices until `count` of this process's are started */
  z.object({ id: z.number().int(), cmd: z.literal('start'), count: z.number().int().nonnegative() }),
  z.object({ id: z.number().int(), cmd: z.literal('telemetry'), load: telemetryLoadSchema.nullable() }),
  z.object({ id: z.number().int(), cmd: z.literal('stats') }),
  /** per device: next seq and acked windows */
  z.object({ id: z.number().int(), cmd: z.literal('progress') }),
  z.object({ id: z.number().int(), cmd: z.literal('stop'), graceful: z.boolean().default(false) }),
]);
export type FleetCommand = z.input<typeof fleetCommandSchema>;
