import { deviceIdSchema, modelNameSchema, modelVersionSchema } from '@perch/shared';
import { Hono } from 'hono';
import { z } from 'zod';
import { NotFoundError, parseOr400, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import type { DeviceRecord } from '../../store/device-store.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

const desiredModelBody = z.object({
  model: z.object({ name: modelNameSchema, version: modelVersionSchema }).nullable(),
  /** the operator means to go back to an older model: signed into the desired state, else devices refuse the downgrade */
  rollback: z.boolean().optional(),
});

const limitQuery = z.coerce.number().int().min(1).max(1000).default(20);
const sinceQuery = z.coerce.number().int().nonnegative().optional();

/** Devices: status, last seen, actual and desired state, telemetry. */
export function deviceRoutes(deps: ApiDeps) {
  const app = new Hono();

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
    const d = deps.devices.get(parseOr400(deviceIdSchema, id, 'id'));
    if (!d) throw new NotFoundError(`no device ${id}`);
    return d;
  };

  app.get('/', (c) => c.json({ devices: deps.devices.list().map(view) }));

  app.get('/:id', (c) => c.json(view(device(c.req.param('id')))));

  // Setting the model of a device not seen yet is allowed: it gets it when it first connects.
  app.put('/:id/desired-model', async (c) => {
    const id = parseOr400(deviceIdSchema, c.req.param('id'), 'id');
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      throw new ValidationError('body: malformed JSON');
    }
    const body = parseOr400(desiredModelBody, raw);
    const rec = await deps.desired.setActiveModel(id, body.model, new Date(), { rollback: body.rollback === true });
    return c.json({ deviceId: id, generation: rec.generation, model: body.model, rollback: body.rollback === true });
  });

  app.get('/:id/telemetry', (c) => {
    const d = device(c.req.param('id'));
    const limit = parseOr400(limitQuery, c.req.query('limit'), 'limit');
    return c.json({ windows: deps.telemetry.recent(d.id, limit).map((w) => ({ ...w.window, receivedAt: iso(w.receivedAt) })) });
  });

  // Class totals over recent windows: the quickest way to see what a device is predicting.
  app.get('/:id/predictions', (c) => {
    const d = device(c.req.param('id'));
    const since = parseOr400(sinceQuery, c.req.query('since'), 'since') ?? Date.now() - 5 * 60_000;
    return c.json(deps.telemetry.classTotals(d.id, since));
  });

  return app;
}
