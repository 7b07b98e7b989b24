import { createRoute, z } from '@hono/zod-openapi';
import { deviceIdSchema, histogramCount, histogramQuantile, type Histogram } from '@perch/shared';
import { labelSchema } from '../../identity/device-labels.js';
import { BUCKET_MS, ROLLUP_RESOLUTIONS, type GroupRollup, type Rollup, type RollupResolution } from '../../store/telemetry-rollups.js';
import type { FleetTelemetry } from '../../telemetry/fleet-telemetry.js';
import { ApiError, NotFoundError, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';

/** Buckets one request may span: a day of minutes, about three months of hours (a group query reads members x buckets rows). */
export const MAX_BUCKETS: Record<RollupResolution, number> = { minute: 1440, hour: 2208 };
const DEFAULT_SPAN_MS: Record<RollupResolution, number> = { minute: 3_600_000, hour: 86_400_000 };

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });
const dateTime = () => z.string().openapi({ format: 'date-time' });

/** A time as epoch milliseconds or an ISO 8601 date-time with offset. */
const timeQuery = z
  .string()
  .transform((s, ctx) => {
    const ms = /^\d{1,15}$/.test(s) ? Number(s) : z.iso.datetime({ offset: true }).safeParse(s).success ? Date.parse(s) : Number.NaN;
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: 'epoch milliseconds or an ISO 8601 date-time' });
      return z.NEVER;
    }
    return ms;
  })
  .openapi({ type: 'string', description: 'epoch milliseconds or an ISO 8601 date-time', example: '2026-01-31T00:00:00Z' });

const rollupQuery = z.object({
  resolution: z.enum(ROLLUP_RESOLUTIONS).default('hour').openapi({ description: 'bucket size' }),
  from: timeQuery.optional().openapi({ description: 'start, inclusive; default: `to` less an hour of minutes or a day of hours' }),
  to: timeQuery.optional().openapi({ description: 'end, exclusive; default: now' }),
});

/** The range a rollup request spans, defaults filled in; at most MAX_BUCKETS buckets. */
function rollupRange(q: z.infer<typeof rollupQuery>): { resolution: RollupResolution; from: number; to: number } {
  const to = q.to ?? Date.now();
  const from = q.from ?? to - DEFAULT_SPAN_MS[q.resolution];
  if (from >= to) throw new ValidationError('from: from must be before to', 'from');
  if ((to - from) / BUCKET_MS[q.resolution] > MAX_BUCKETS[q.resolution]) {
    throw new ValidationError(`to: the range spans too many buckets (at most ${MAX_BUCKETS.minute} minutes or ${MAX_BUCKETS.hour} hours)`, 'to');
  }
  return { resolution: q.resolution, from, to };
}

const deviceIdParams = z.object({ id: deviceIdSchema });
// labelSchema may be made before zod is extended with `.openapi()` (api-router.ts): used as it is.
const groupParams = z.object({ group: labelSchema });

const latencySchema = z
  .object({
    spec: z.string().openapi({ description: 'the histogram spec, e.g. `latency-ms.v2`; its bin edges are part of the contract' }),
    count: z.number().int(),
    meanMs: z.number().nullable(),
    p50Ms: z.number().nullable(),
    p95Ms: z.number().nullable(),
    p99Ms: z.number().nullable(),
    counts: z.array(z.number().int()).openapi({ description: "observations per bin of the spec's edges" }),
  })
  .openapi('LatencySummary');

const rollupSchema = z
  .object({
    bucketStart: dateTime(),
    devices: z.number().int().optional().openapi({ description: 'group rollups: members with data in this bucket' }),
    windows: z.number().int(),
    framesReceived: z.number().int(),
    framesInferred: z.number().int(),
    framesDropped: z.number().int().openapi({ description: 'frames replaced by a newer one before inference took them' }),
    inferenceErrors: z.number().int(),
    classCounts: z.record(z.string(), z.number().int()),
    latency: z.array(latencySchema).openapi({ description: "all cameras' latency histograms merged, one per spec" }),
    shadow: z
      .object({
        framesCompared: z.number().int().openapi({ description: 'sampled frames both the champion and a challenger in shadow answered' }),
        agreed: z.number().int().openapi({ description: 'of those, frames whose top-1 labels were equal' }),
        agreement: z.number().nullable().openapi({ description: 'agreed / framesCompared; null when nothing was compared' }),
      })
      .openapi({ description: 'champion against challenger (shadow mode) in this bucket' }),
  })
  .openapi('Rollup');

const rangeFields = { resolution: z.enum(ROLLUP_RESOLUTIONS), from: dateTime(), to: dateTime(), rollups: z.array(rollupSchema) };

const deviceRollups = createRoute({
  method: 'get',
  path: '/devices/{id}/telemetry/rollups',
  tags: ['fleet telemetry'],
  summary: "A device's telemetry per minute or hour",
  description: `Buckets are named by the device's clock. At most ${MAX_BUCKETS.minute} minutes or ${MAX_BUCKETS.hour} hours per request.`,
  request: { params: deviceIdParams, query: rollupQuery },
  responses: { 200: json(z.object({ deviceId: deviceIdSchema, ...rangeFields }), 'the rollups, oldest first'), ...errorResponses(400, 404, 503) },
});

const groupRollups = createRoute({
  method: 'get',
  path: '/groups/{group}/telemetry/rollups',
  tags: ['fleet telemetry'],
  summary: "A device group's telemetry per minute or hour",
  description: "Its members' rollups added bucket by bucket (membership as it is now).",
  request: { params: groupParams, query: rollupQuery },
  responses: {
    200: json(z.object({ group: z.string(), members: z.number().int(), ...rangeFields }), 'the rollups, oldest first'),
    ...errorResponses(400, 404, 503),
  },
});

const gaps = createRoute({
  method: 'get',
  path: '/devices/{id}/telemetry/gaps',
  tags: ['fleet telemetry'],
  summary: "Telemetry seqs missing from a device's windows",
  request: { params: deviceIdParams, query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ description: 'ranges to list, 1-1000 (default 100)' }) }) },
  responses: {
    200: json(
      z.object({
        deviceId: deviceIdSchema,
        highestSeq: z.number().int().nullable().openapi({ description: 'null before the first window' }),
        contiguousSeq: z.number().int().nullable().openapi({ description: 'every seq up to this one was stored; null when seq 0 is missing' }),
        missing: z.number().int(),
        pending: z.number().int().openapi({ description: 'missing for less than the grace period: may still arrive' }),
        confirmedLost: z.number().int(),
        graceMs: z.number().int(),
        ranges: z.array(
          z.object({ firstSeq: z.number().int(), lastSeq: z.number().int(), count: z.number().int(), detectedAt: dateTime(), confirmedLost: z.boolean() }),
        ).openapi({ description: 'newest first, at most `limit`' }),
        truncated: z.boolean(),
      }),
      'the gaps',
    ),
    ...errorResponses(400, 404, 503),
  },
});

const summary = createRoute({
  method: 'get',
  path: '/fleet/summary',
  tags: ['fleet telemetry'],
  summary: 'The fleet at a glance: devices, ingest, missing windows',
  responses: {
    200: json(
      z.object({
        devices: z.object({ total: z.number().int(), online: z.number().int(), offline: z.number().int(), unknown: z.number().int(), silent: z.number().int() }),
        mqttClientsConnected: z.number().int(),
        ingest: z.object({
          received: z.number().int(),
          inserted: z.number().int(),
          duplicates: z.number().int(),
          late: z.number().int(),
          missingOpened: z.number().int(),
          batches: z.number().int(),
          failedBatches: z.number().int(),
          lost: z.number().int(),
          lastBatchAt: dateTime().nullable(),
          queued: z.number().int(),
        }),
        gaps: z.object({ devicesWithGaps: z.number().int(), missing: z.number().int(), confirmedLost: z.number().int(), graceMs: z.number().int() }),
      }),
      'the summary',
    ),
    ...errorResponses(503),
  },
});

const iso = (ms: number) => new Date(ms).toISOString();
const finite = (n: number) => (Number.isFinite(n) ? n : null);

function latencyView(h: Histogram) {
  const count = histogramCount(h);
  return {
    spec: h.spec,
    count,
    meanMs: count > 0 ? h.sum / count : null,
    p50Ms: finite(histogramQuantile(h, 0.5)),
    p95Ms: finite(histogramQuantile(h, 0.95)),
    p99Ms: finite(histogramQuantile(h, 0.99)),
    counts: h.counts,
  };
}

const rollupView = (r: Rollup | GroupRollup) => ({
  bucketStart: iso(r.bucketStart),
  ...('devices' in r ? { devices: r.devices } : {}),
  windows: r.windows,
  framesReceived: r.framesReceived,
  framesInferred: r.framesInferred,
  framesDropped: r.framesDropped,
  inferenceErrors: r.inferenceErrors,
  classCounts: r.classCounts,
  latency: r.latency.map(latencyView),
  shadow: { ...r.shadow, agreement: r.shadow.framesCompared > 0 ? r.shadow.agreed / r.shadow.framesCompared : null },
});

/** Fleet telemetry: rollups per device and per group, sequence gaps, the fleet at a glance. */
export function fleetTelemetryRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const fleet = (): FleetTelemetry => {
    if (!deps.fleetTelemetry) throw new ApiError(503, 'unavailable', 'fleet telemetry is not running');
    return deps.fleetTelemetry;
  };

  const knownDevice = (id: string): string => {
    if (!deps.devices.get(id)) throw new NotFoundError(`no device ${id}`);
    return id;
  };

  app.openapi(deviceRollups, (c) => {
    const f = fleet();
    const id = knownDevice(c.req.valid('param').id);
    const q = rollupRange(c.req.valid('query'));
    const rollups = f.rollups.forDevice(id, q.resolution, q.from, q.to);
    return c.json({ deviceId: id, resolution: q.resolution, from: iso(q.from), to: iso(q.to), rollups: rollups.map(rollupView) }, 200);
  });

  app.openapi(groupRollups, (c) => {
    const f = fleet();
    const { group } = c.req.valid('param');
    const q = rollupRange(c.req.valid('query'));
    const members = f.rollups.groupSize(group);
    if (members === 0) throw new NotFoundError(`no device in group ${group}`);
    const rollups = f.rollups.forGroup(group, q.resolution, q.from, q.to);
    return c.json({ group, members, resolution: q.resolution, from: iso(q.from), to: iso(q.to), rollups: rollups.map(rollupView) }, 200);
  });

  app.openapi(gaps, (c) => {
    const f = fleet();
    const id = knownDevice(c.req.valid('param').id);
    const r = f.gaps.report(id, Date.now(), c.req.valid('query').limit);
    return c.json({ ...r, graceMs: f.gaps.graceMs, ranges: r.ranges.map((g) => ({ ...g, detectedAt: iso(g.detectedAt) })) }, 200);
  });

  app.openapi(summary, (c) => {
    const s = fleet().summary();
    return c.json({ ...s, ingest: { ...s.ingest, lastBatchAt: s.ingest.lastBatchAt === null ? null : iso(s.ingest.lastBatchAt) } }, 200);
  });

  return app;
}
