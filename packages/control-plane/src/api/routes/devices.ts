import { createRoute, z } from '@hono/zod-openapi';
import { deviceIdSchema, modelNameSchema, modelVersionSchema, reportedStateSchema, telemetryWindowSchema } from '@perch/shared';
import { actorOf } from '../api-actor.js';
import { NotFoundError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';
import type { DeviceRecord } from '../../store/device-store.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });

const DEVICE_STATUSES = ['unknown', 'online', 'offline'] as const;
const modelRef = z.object({ name: modelNameSchema, version: modelVersionSchema });

const deviceViewSchema = z
  .object({
    id: deviceIdSchema,
    status: z.enum(DEVICE_STATUSES),
    statusReason: z.string().nullable(),
    agentVersion: z.string().nullable(),
    firstSeen: z.string().nullable().openapi({ format: 'date-time' }),
    lastSeen: z.string().nullable().openapi({ format: 'date-time' }),
    desired: z.object({ generation: z.number().int(), model: modelRef.nullable(), updatedAt: z.string().nullable().openapi({ format: 'date-time' }) }).nullable(),
    reported: reportedStateSchema.nullable(),
  })
  .openapi('Device');

const desiredModelBody = z
  .object({
    model: modelRef.nullable().openapi({ description: 'the model the device should run; null for none' }),
    /** the operator means to go back to an older model: signed into the desired state, else devices refuse the downgrade */
    rollback: z.boolean().optional().openapi({ description: 'going back to an older model on purpose: signed into the state, else devices refuse the downgrade' }),
    shadow: modelRef.nullable().optional().openapi({ description: 'a challenger run in shadow beside `model` on a share of its frames: compared and reported, never acted on; needs a `model`' }),
    shadowSampleRate: z.number().gt(0).max(1).optional().openapi({ description: "the share of the champion's frames the challenger runs on (the device's default, 0.25, when absent)" }),
    force: z
      .boolean()
      .optional()
      .openapi({
        description:
          'set it although an active rollout manages the device (else a 409 naming the rollout): the device is released from the rollout, which issues it nothing more (rollback included) and leaves it out of its gates',
      }),
  })
  .refine((b) => !b.shadow || b.model !== null, { message: 'a challenger needs a champion: give model too', path: ['shadow'] })
  .refine((b) => !b.shadow || !b.model || b.shadow.name !== b.model.name || b.shadow.version !== b.model.version, { message: 'the challenger must be another model version than the champion', path: ['shadow'] })
  .openapi('DesiredModel');

const idParams = z.object({ id: deviceIdSchema });

// Filters are plain strings bound as SQL parameters: anything a client sends matches exactly or not at all.
const filterText = z.string().min(1).max(128);

const listDevices = createRoute({
  method: 'get',
  path: '/',
  tags: ['devices'],
  summary: 'Devices, by id, filtered',
  request: {
    query: z.object({
      status: z.enum(DEVICE_STATUSES).optional().openapi({ description: 'only devices with this status' }),
      tag: filterText.optional().openapi({ description: 'only devices with this tag' }),
      group: filterText.optional().openapi({ description: 'only devices in this group' }),
      q: filterText.optional().openapi({ description: 'only devices whose id starts with this (a plain prefix: `%` and `_` match themselves)' }),
      limit: limitQuery(100),
      cursor: cursorQuery,
    }),
  },
  responses: { 200: json(z.object({ devices: z.array(deviceViewSchema), nextCursor: nextCursorSchema }), 'a page of devices'), ...errorResponses(400) },
});

const showDevice = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['devices'],
  summary: 'One device: status, last seen, desired and reported state',
  request: { params: idParams },
  responses: { 200: json(deviceViewSchema, 'the device'), ...errorResponses(400, 404) },
});

const setDesiredModel = createRoute({
  method: 'put',
  path: '/{id}/desired-model',
  tags: ['devices'],
  summary: "Set a device's desired model",
  description:
    "Makes the next generation of the device's signed desired state and publishes it. A device not seen yet gets it when it first connects. " +
    'A device in an active rollout (running, paused, rolling back) is refused with 409 `device_in_rollout` naming the rollout, unless `force` is true; ' +
    'a device set by hand leaves every rollout that could still issue it a state (`releasedFrom`), so none undoes the change.',
  request: { params: idParams, body: { required: true, content: { 'application/json': { schema: desiredModelBody } } } },
  responses: {
    200: json(
      z.object({
        deviceId: deviceIdSchema,
        generation: z.number().int(),
        model: modelRef.nullable(),
        shadow: modelRef.nullable(),
        rollback: z.boolean(),
        releasedFrom: z.array(z.string()).openapi({ description: 'the rollouts that no longer manage the device' }),
      }),
      'the new generation',
    ),
    ...errorResponses(400, 404, 409, 415),
  },
});

const telemetry = createRoute({
  method: 'get',
  path: '/{id}/telemetry',
  tags: ['devices'],
  summary: "A device's telemetry windows, newest first, a page at a time",
  description:
    'Pages by `seq`: `nextCursor` names the last window of the page, and the next page holds the windows below it, so windows arriving meanwhile ' +
    'neither repeat nor shift the pages (a late window below the cursor, filling a gap, is on a later page).',
  request: { params: idParams, query: z.object({ limit: limitQuery(20), cursor: cursorQuery }) },
  responses: {
    200: json(z.object({ windows: z.array(telemetryWindowSchema.and(z.object({ receivedAt: z.string().nullable() }))), nextCursor: nextCursorSchema }), 'a page of windows'),
    ...errorResponses(400, 404),
  },
});

const predictions = createRoute({
  method: 'get',
  path: '/{id}/predictions',
  tags: ['devices'],
  summary: 'Class totals over recent windows',
  request: {
    params: idParams,
    query: z.object({ since: z.coerce.number().int().nonnegative().optional().openapi({ description: 'ms since the epoch; default: 5 minutes ago' }) }),
  },
  responses: {
    200: json(
      z.object({ deviceId: z.string(), since: z.number().int(), windows: z.number().int(), framesInferred: z.number().int(), classCounts: z.record(z.string(), z.number().int()) }),
      'totals per label',
    ),
    ...errorResponses(400, 404),
  },
});

const deviceKey = z.string();
/** the seq of the last window a telemetry page held */
const windowKey = z.number().int().nonnegative();

/** Devices: status, last seen, actual and desired state, telemetry. */
export function deviceRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const view = (d: DeviceRecord) => {
    const desired = deps.desired.get(d.id);
    const target = desired?.envelope.signed.active?.custom;
    return {
      id: d.id,
      status: d.status,
      statusReason: d.statusReason,
      agentVersion: d.agentVersion,
      firstSeen: iso(d.firstSeen),
      lastSeen: iso(d.lastSeen),
      desired: desired
        ? { generation: desired.generation, model: target ? { name: target.name, version: target.version } : null, updatedAt: iso(desired.updatedAt) }
        : null,
      reported: d.reported,
    };
  };

  const device = (id: string): DeviceRecord => {
    const d = deps.devices.get(id);
    if (!d) throw new NotFoundError(`no device ${id}`);
    return d;
  };

  app.openapi(listDevices, (c) => {
    const { status, tag, group, q, limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, deviceKey);
    const ids = deps.deviceListing.page({ status, tag, group, idPrefix: q }, after, limit + 1);
    const records = ids.map((id) => deps.devices.get(id)).filter((d): d is DeviceRecord => d !== null);
    const page = pageOf(records, limit, (d) => d.id);
    return c.json({ devices: page.items.map(view), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(showDevice, (c) => c.json(view(device(c.req.valid('param').id)), 200));

  app.openapi(setDesiredModel, async (c) => {
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const rollback = body.rollback === true;
    const shadow = body.shadow ?? null;
    const apply = () =>
      deps.desired.setDesired(id, { active: body.model, shadow, ...(body.shadowSampleRate !== undefined ? { shadowSampleRate: body.shadowSampleRate } : {}), rollback }, new Date());
    // Rollouts decide whether a device they manage may be set by hand (rollouts/manual-desired-change.ts).
    const { result: rec, releasedFrom } = deps.rollouts
      ? await deps.rollouts.setDesiredByHand(id, { force: body.force === true, actor: actorOf(c) }, apply)
      : { result: await apply(), releasedFrom: [] };
    return c.json({ deviceId: id, generation: rec.generation, model: body.model, shadow, rollback, releasedFrom }, 200);
  });

  app.openapi(telemetry, (c) => {
    const d = device(c.req.valid('param').id);
    const { limit, cursor } = c.req.valid('query');
    const before = decodeCursor(cursor, windowKey);
    const page = pageOf(deps.telemetry.windowsBefore(d.id, before, limit + 1), limit, (w) => w.seq);
    return c.json({ windows: page.items.map((w) => ({ ...w.window, receivedAt: iso(w.receivedAt) })), nextCursor: page.nextCursor }, 200);
  });

  // Class totals over recent windows: the quickest way to see what a device is predicting.
  app.openapi(predictions, (c) => {
    const d = device(c.req.valid('param').id);
    const since = c.req.valid('query').since ?? Date.now() - 5 * 60_000;
    return c.json(deps.telemetry.classTotals(d.id, since), 200);
  });

  return app;
}
