import { createRoute, z } from '@hono/zod-openapi';
import { deviceIdSchema } from '@perch/shared';
import { actorOf } from '../api-actor.js';
import { ApiError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';
import type { OperatorAction } from '../../rollouts/rollout-engine.js';
import type { RolloutFeature } from '../../rollouts/rollout-feature.js';
import { rolloutSpecSchema } from '../../rollouts/rollout-spec.js';
import { ROLLOUT_STATES, type RolloutRecord, type StoredGateEvaluation } from '../../rollouts/rollout-store.js';

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

const idParams = z.object({
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a rollout id')
    .openapi({ param: { name: 'id', in: 'path' }, example: 'ro-0123456789abcdef' }),
});

const deviceCountsSchema = z.object({
  pending: z.number().int(),
  shadow: z.number().int(),
  replaced: z.number().int(),
  restored: z.number().int(),
  released: z.number().int().openapi({ description: 'devices whose desired model was set by hand since (`force`): the rollout no longer manages them' }),
  total: z.number().int(),
});

const rolloutSchema = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    model: z.object({ name: z.string(), version: z.string(), sha256: z.string().nullable() }),
    state: z.enum(ROLLOUT_STATES),
    stage: z.object({ index: z.number().int().openapi({ description: '0-based' }), of: z.number().int() }),
    phase: z.enum(['shadow', 'replace']),
    phaseStartedAt: z.string().nullable().openapi({ format: 'date-time' }),
    reason: z.string().nullable().openapi({ description: 'why it paused, rolled back or was aborted' }),
    createdBy: z.string().nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
    devices: deviceCountsSchema.openapi({ description: 'devices the rollout holds, by what it issued them' }),
  })
  .openapi('Rollout');

const gateEvaluationSchema = z
  .object({
    gate: z.string(),
    value: z.number().nullable(),
    threshold: z.number().nullable(),
    verdict: z.enum(['pass', 'fail', 'wait', 'skip']),
    phase: z.enum(['shadow', 'replace']),
    at: z.string().openapi({ format: 'date-time' }),
    detail: z.record(z.string(), z.unknown()).optional(),
  })
  .openapi('GateEvaluation');

const rolloutDetailSchema = rolloutSchema
  .extend({
    spec: z.record(z.string(), z.unknown()).openapi({ description: 'the spec as stored, defaults filled in' }),
    stages: z.array(
      z.object({
        index: z.number().int(),
        percent: z.number().optional(),
        count: z.number().int().optional(),
        soakSeconds: z.number(),
        status: z.enum(['waiting', 'current', 'passed', 'stopped']),
        devices: z.number().int().openapi({ description: 'devices that joined in this stage' }),
        gates: z.array(gateEvaluationSchema).openapi({ description: 'the latest evaluation of each gate' }),
        history: z.array(gateEvaluationSchema).openapi({ description: 'every stored evaluation, oldest first' }),
      }),
    ),
    events: z.array(
      z.object({ id: z.number().int(), at: z.string(), type: z.string(), state: z.string(), stage: z.number().int(), phase: z.string(), reason: z.string().nullable(), actor: z.string().nullable() }),
    ),
  })
  .openapi('RolloutDetail');

const deviceRowSchema = z.object({
  deviceId: deviceIdSchema,
  stage: z.number().int(),
  status: z.enum(['pending', 'shadow', 'replaced', 'restored']),
  generation: z.number().int().nullable(),
  assignedAt: z.string(),
  previousModel: z.object({ name: z.string(), version: z.string() }).nullable(),
  reported: z.object({ phase: z.string(), generation: z.number().int(), active: z.string().nullable().openapi({ description: 'sha256 of the model it runs' }) }).nullable(),
  released: z
    .object({ at: z.string().openapi({ format: 'date-time' }), by: z.string().nullable() })
    .nullable()
    .openapi({ description: 'when its desired model was set by hand, and by whom: the rollout issues it nothing more, rollback included, and leaves it out of its gates' }),
});

const create = createRoute({
  method: 'post',
  path: '/',
  tags: ['rollouts'],
  summary: 'Start a staged rollout',
  description:
    'Stages are cumulative (percent or count of the target) with a soak each; cohorts are chosen by a hash of device and rollout. ' +
    'Gates judge each stage from telemetry and reported states; a failed gate pauses or rolls every device of the rollout back (`onFail`). ' +
    'A target overlapping an active rollout is a 409 naming it. `start: false` stores a draft, started by `resume`.',
  request: { body: { required: true, content: { 'application/json': { schema: rolloutSpecSchema } } } },
  responses: { 201: json(rolloutSchema, 'created'), ...errorResponses(400, 404, 409, 415, 422, 503) },
});

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['rollouts'],
  summary: 'Rollouts, newest first',
  request: { query: z.object({ limit: limitQuery(50), cursor: cursorQuery }) },
  responses: { 200: json(z.object({ rollouts: z.array(rolloutSchema), nextCursor: nextCursorSchema }), 'a page of rollouts'), ...errorResponses(400, 503) },
});

const show = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['rollouts'],
  summary: 'One rollout: its stages with gate values over time, and its history',
  request: { params: idParams },
  responses: { 200: json(rolloutDetailSchema, 'the rollout'), ...errorResponses(400, 404, 503) },
});

const devices = createRoute({
  method: 'get',
  path: '/{id}/devices',
  tags: ['rollouts'],
  summary: "The rollout's devices: stage joined, what was issued, what they report",
  request: { params: idParams, query: z.object({ limit: limitQuery(1000), cursor: cursorQuery }) },
  responses: { 200: json(z.object({ devices: z.array(deviceRowSchema), nextCursor: nextCursorSchema }), 'a page of devices'), ...errorResponses(400, 404, 503) },
});

const ACTIONS: Record<OperatorAction, string> = {
  pause: 'Pause: no stage or device changes until resumed',
  resume: 'Resume a paused rollout (its phase starts afresh), or start a draft',
  promote: 'Promote: skip the rest of the current phase or stage',
  abort: 'Abort: stop here; devices keep what they run',
  rollback: 'Roll every device of the rollout back to its previous model',
};

const actionBody = z.object({ reason: z.string().trim().min(1).max(500).optional() }).openapi('RolloutAction');

const actionRoute = (action: OperatorAction) =>
  createRoute({
    method: 'post',
    path: `/{id}/${action}`,
    tags: ['rollouts'],
    summary: ACTIONS[action],
    request: { params: idParams, body: { required: false, content: { 'application/json': { schema: actionBody } } } },
    responses: { 200: json(rolloutSchema, 'the rollout after the action'), ...errorResponses(400, 404, 409, 503) },
  });

function feature(deps: ApiDeps): RolloutFeature {
  if (!deps.rollouts) throw new ApiError(503, 'unavailable', 'rollouts are not running on this control plane');
  return deps.rollouts;
}

/** Staged rollouts: create, list, show with gate history, operator actions. */
export function rolloutRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const view = (r: RolloutRecord) => {
    const f = feature(deps);
    const counts = f.store.statusCounts(r.id);
    return {
      id: r.id,
      name: r.name,
      model: { name: r.spec.model.name, version: r.spec.model.version, sha256: deps.versions.byId(r.modelVersionId)?.sha256 ?? null },
      state: r.state,
      stage: { index: r.stageIndex, of: r.spec.stages.length },
      phase: r.phase,
      phaseStartedAt: iso(r.phaseStartedAt),
      reason: r.reason,
      createdBy: r.createdBy,
      createdAt: iso(r.createdAt) as string,
      updatedAt: iso(r.updatedAt) as string,
      devices: { ...counts, total: counts.pending + counts.shadow + counts.replaced + counts.restored + counts.released },
    };
  };

  const rollout = (id: string): RolloutRecord => {
    const r = feature(deps).store.get(id);
    if (!r) throw new ApiError(404, 'not_found', `no rollout ${id}`);
    return r;
  };

  app.openapi(create, async (c) => {
    const r = await feature(deps).engine.create(c.req.valid('json'), actorOf(c));
    c.set('auditTargets', { rolloutId: r.id });
    return c.json(view(r), 201);
  });

  app.openapi(list, (c) => {
    const { limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, z.tuple([z.number().int(), z.string()]));
    const rows = feature(deps).store.page(after ? { createdAt: after[0], id: after[1] } : null, limit + 1);
    const page = pageOf(rows, limit, (r) => [r.createdAt, r.id]);
    return c.json({ rollouts: page.items.map(view), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(show, (c) => {
    const r = rollout(c.req.valid('param').id);
    const f = feature(deps);
    const evaluations = f.store.evaluations(r.id);
    const joined = new Map<number, number>();
    for (const a of f.store.assignments(r.id)) joined.set(a.stageIndex, (joined.get(a.stageIndex) ?? 0) + 1);
    const evalView = (e: StoredGateEvaluation) => ({ gate: e.gate, value: e.value, threshold: e.threshold, verdict: e.verdict, phase: e.phase, at: iso(e.at) as string, ...(e.detail ? { detail: e.detail } : {}) });
    const stopped = r.state === 'paused' || r.state === 'rolling-back' || r.state === 'rolled-back' || r.state === 'aborted';
    const stages = r.spec.stages.map((s, index) => {
      const history = evaluations.filter((e) => e.stageIndex === index);
      const latest = new Map<string, StoredGateEvaluation>();
      for (const e of history) latest.set(e.gate, e);
      const status = index < r.stageIndex || r.state === 'completed' ? 'passed' : index > r.stageIndex || r.state === 'draft' ? 'waiting' : stopped ? 'stopped' : 'current';
      return {
        index,
        ...(s.percent !== undefined ? { percent: s.percent } : {}),
        ...(s.count !== undefined ? { count: s.count } : {}),
        soakSeconds: s.soakSeconds,
        status: status as 'waiting' | 'current' | 'passed' | 'stopped',
        devices: joined.get(index) ?? 0,
        gates: [...latest.values()].map(evalView),
        history: history.map(evalView),
      };
    });
    const events = f.store.events(r.id).map((e) => ({ id: e.id, at: iso(e.at) as string, type: e.type, state: e.state, stage: e.stageIndex, phase: e.phase, reason: e.reason, actor: e.actor }));
    return c.json({ ...view(r), spec: r.spec as unknown as Record<string, unknown>, stages, events }, 200);
  });

  app.openapi(devices, (c) => {
    const r = rollout(c.req.valid('param').id);
    const { limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, z.string());
    const rows = feature(deps)
      .store.assignments(r.id)
      .sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))
      .filter((a) => after === null || a.deviceId > after)
      .slice(0, limit + 1);
    const page = pageOf(rows, limit, (a) => a.deviceId);
    const items = page.items.map((a) => {
      const prev = a.previous.activeVersionId === null ? null : deps.versions.byId(a.previous.activeVersionId);
      const reported = deps.devices.get(a.deviceId)?.reported ?? null;
      return {
        deviceId: a.deviceId,
        stage: a.stageIndex,
        status: a.status,
        generation: a.generation,
        assignedAt: iso(a.assignedAt) as string,
        previousModel: prev ? { name: prev.name, version: prev.version } : null,
        reported: reported ? { phase: reported.deployment.phase, generation: reported.deployment.generation, active: reported.active?.sha256 ?? null } : null,
        released: a.releasedAt === null ? null : { at: iso(a.releasedAt) as string, by: a.releasedBy },
      };
    });
    return c.json({ devices: items, nextCursor: page.nextCursor }, 200);
  });

  for (const action of Object.keys(ACTIONS) as OperatorAction[]) {
    app.openapi(actionRoute(action), async (c) => {
      const { id } = c.req.valid('param');
      // The body is optional: without one the router hands over {}.
      const { reason } = c.req.valid('json');
      const r = await feature(deps).engine.act(id, action, actorOf(c), reason);
      return c.json(view(r), 200);
    });
  }

  return app;
}
