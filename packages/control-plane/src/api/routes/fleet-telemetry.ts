import { deviceIdSchema, histogramCount, histogramQuantile, type Histogram } from '@perch/shared';
import { Hono } from 'hono';
import { z } from 'zod';
import { labelSchema } from '../../identity/device-labels.js';
import { BUCKET_MS, ROLLUP_RESOLUTIONS, type GroupRollup, type Rollup, type RollupResolution } from '../../store/telemetry-rollups.js';
import type { FleetTelemetry } from '../../telemetry/fleet-telemetry.js';
import { ApiError, NotFoundError, parseOr400 } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';

/** Buckets one request may span: a day of minutes, about three months of hours (a group query reads members x buckets rows). */
export const MAX_BUCKETS: Record<RollupResolution, number> = { minute: 1440, hour: 2208 };
const DEFAULT_SPAN_MS: Record<RollupResolution, number> = { minute: 3_600_000, hour: 86_400_000 };

/** A time as epoch milliseconds or an ISO 8601 date-time with offset. */
export const timeParam = z.string().transform((s, ctx) => {
  const ms = /^\d{1,15}$/.test(s) ? Number(s) : z.iso.datetime({ offset: true }).safeParse(s).success ? Date.parse(s) : Number.NaN;
  if (Number.isNaN(ms)) {
    ctx.addIssue({ code: 'custom', message: 'epoch milliseconds or an ISO 8601 date-time' });
    return z.NEVER;
  }
  return ms;
});

export const rollupQuery = z
  .object({
    resolution: z.enum(ROLLUP_RESOLUTIONS).default('hour'),
    from: timeParam.optional(),
    to: timeParam.optional(),
  })
  .transform((q) => {
    const to = q.to ?? Date.now();
    return { resolution: q.resolution, to, from: q.from ?? to - DEFAULT_SPAN_MS[q.resolution] };
  })
  .refine((q) => q.from < q.to, { message: 'from must be before to', path: ['from'] })
  .refine((q) => (q.to - q.from) / BUCKET_MS[q.resolution] <= MAX_BUCKETS[q.resolution], {
    message: `the range spans too many buckets (at most ${MAX_BUCKETS.minute} minutes or ${MAX_BUCKETS.hour} hours)`,
    path: ['to'],
  });

export const gapsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });
export const groupParam = labelSchema;

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
});

/** Fleet telemetry: rollups per device and per group, sequence gaps, the fleet at a glance. */
export function fleetTelemetryRoutes(deps: ApiDeps) {
  const app = new Hono();

  const fleet = (): FleetTelemetry => {
    if (!deps.fleetTelemetry) throw new ApiError(503, 'unavailable', 'fleet telemetry is not running');
    return deps.fleetTelemetry;
  };

  const deviceId = (raw: string): string => {
    const id = parseOr400(deviceIdSchema, raw, 'id');
    if (!deps.devices.get(id)) throw new NotFoundError(`no device ${id}`);
    return id;
  };

  app.get('/devices/:id/telemetry/rollups', (c) => {
    const f = fleet();
    const id = deviceId(c.req.param('id'));
    const q = parseOr400(rollupQuery, c.req.query());
    const rollups = f.rollups.forDevice(id, q.resolution, q.from, q.to);
    return c.json({ deviceId: id, resolution: q.resolution, from: iso(q.from), to: iso(q.to), rollups: rollups.map(rollupView) });
  });

  app.get('/groups/:group/telemetry/rollups', (c) => {
    const f = fleet();
    const group = parseOr400(groupParam, c.req.param('group'), 'group');
    const q = parseOr400(rollupQuery, c.req.query());
    const members = f.rollups.groupSize(group);
    if (members === 0) throw new NotFoundError(`no device in group ${group}`);
    const rollups = f.rollups.forGroup(group, q.resolution, q.from, q.to);
    return c.json({ group, members, resolution: q.resolution, from: iso(q.from), to: iso(q.to), rollups: rollups.map(rollupView) });
  });

  app.get('/devices/:id/telemetry/gaps', (c) => {
    const f = fleet();
    const id = deviceId(c.req.param('id'));
    const { limit } = parseOr400(gapsQuery, c.req.query());
    const r = f.gaps.report(id, Date.now(), limit);
    return c.json({ ...r, graceMs: f.gaps.graceMs, ranges: r.ranges.map((g) => ({ ...g, detectedAt: iso(g.detectedAt) })) });
  });

  app.get('/fleet/summary', (c) => {
    const s = fleet().summary();
    return c.json({ ...s, ingest: { ...s.ingest, lastBatchAt: s.ingest.lastBatchAt === null ? null : iso(s.ingest.lastBatchAt) } });
  });

  return app;
}
