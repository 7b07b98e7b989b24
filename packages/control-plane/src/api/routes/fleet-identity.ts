import { createRoute, z } from '@hono/zod-openapi';
import { deviceIdSchema } from '@perch/shared';
import { IdentityError, type DeviceIdentityService } from '../../identity/device-identity-service.js';
import { labelSchema } from '../../identity/device-labels.js';
import type { ClaimTokenRecord } from '../../store/claim-token-store.js';
import { ApiError, NotFoundError, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });
const jsonBody = <S extends z.ZodType>(schema: S, required: boolean) => ({ required, content: { 'application/json': { schema } } });
const dateTime = () => z.string().openapi({ format: 'date-time' });

const labels = z.array(labelSchema).max(64).openapi({ description: 'up to 64 names of 1-64 of `A-Z a-z 0-9 _ . : -`; duplicates collapse', example: ['outdoor'] });

const claimTokenIdParams = z.object({
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a claim token id')
    .openapi({ param: { name: 'id', in: 'path' }, example: 'ct_0123456789abcdef' }),
});
const deviceIdParams = z.object({ id: deviceIdSchema });

const createClaimTokenBody = z
  .object({
    name: z.string().trim().min(1).max(128),
    maxUses: z.number().int().positive().optional().openapi({ description: 'absent: unlimited' }),
    expiresAt: z.iso.datetime({ offset: true }).optional().openapi({ description: 'absent: never' }),
    tags: labels.optional().openapi({ description: 'given to every device that claims with the token' }),
    groups: labels.optional().openapi({ description: 'given to every device that claims with the token' }),
  })
  .openapi('NewClaimToken');

const provisionDeviceBody = z.object({ tags: labels.optional(), groups: labels.optional() }).openapi({ description: 'labels added to the device' });
const revokeDeviceBody = z.object({ reason: z.string().trim().min(1).max(500).optional() });
const deviceLabelsBody = z.object({ tags: labels, groups: labels }).openapi('DeviceLabels');

const claimTokenSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    maxUses: z.number().int().nullable().openapi({ description: 'null: unlimited' }),
    uses: z.number().int(),
    expiresAt: dateTime().nullable().openapi({ description: 'null: never' }),
    tags: z.array(z.string()),
    groups: z.array(z.string()),
    createdAt: dateTime(),
    revokedAt: dateTime().nullable(),
  })
  .openapi('ClaimToken');

const deviceIdentitySchema = z
  .object({
    deviceId: deviceIdSchema,
    revoked: z.object({ at: dateTime(), reason: z.string().nullable() }).nullable(),
    credentials: z
      .object({
        issuedAt: dateTime(),
        usedAt: dateTime().nullable().openapi({ description: 'first login with them; null: never used' }),
        claimTokenId: z.string().nullable().openapi({ description: 'the claim token they came from; null: issued by an operator' }),
      })
      .nullable(),
    tags: z.array(z.string()),
    groups: z.array(z.string()),
  })
  .openapi('DeviceIdentity');

const createClaimToken = createRoute({
  method: 'post',
  path: '/claim-tokens',
  tags: ['fleet identity'],
  summary: 'Create a claim token',
  description: 'Boxes configured with it claim their own MQTT credentials. The token is in this answer only; the control plane keeps its SHA-256.',
  request: { body: jsonBody(createClaimTokenBody, true) },
  responses: {
    201: json(claimTokenSchema.extend({ token: z.string().openapi({ description: "the secret, for the agent's `broker.claimToken`; shown once" }) }), 'created'),
    ...errorResponses(400, 415, 503),
  },
});

const listClaimTokens = createRoute({
  method: 'get',
  path: '/claim-tokens',
  tags: ['fleet identity'],
  summary: 'Claim tokens, revoked ones included (never their secrets)',
  responses: { 200: json(z.object({ claimTokens: z.array(claimTokenSchema) }), 'the claim tokens'), ...errorResponses(503) },
});

const revokeClaimToken = createRoute({
  method: 'delete',
  path: '/claim-tokens/{id}',
  tags: ['fleet identity'],
  summary: 'Revoke a claim token',
  description: 'Revoked, not deleted: the devices claimed with it keep its id in their credentials. Credentials already claimed stay valid.',
  request: { params: claimTokenIdParams },
  responses: { 200: json(claimTokenSchema, 'revoked'), ...errorResponses(400, 404, 503) },
});

const showIdentity = createRoute({
  method: 'get',
  path: '/devices/{id}/identity',
  tags: ['fleet identity'],
  summary: "A device's revocation, credentials (never the secret) and labels",
  request: { params: deviceIdParams },
  responses: { 200: json(deviceIdentitySchema, 'the identity'), ...errorResponses(400, 404, 503) },
});

const issueCredentials = createRoute({
  method: 'post',
  path: '/devices/{id}/credentials',
  tags: ['fleet identity'],
  summary: 'Issue a device fresh MQTT credentials',
  description:
    'Replaces any it had and lifts a revocation; a device not seen yet is registered. The password is in this answer only; the control plane keeps its SHA-256.',
  request: { params: deviceIdParams, body: jsonBody(provisionDeviceBody, false) },
  responses: {
    201: json(
      z.object({
        deviceId: deviceIdSchema,
        username: z.string().openapi({ description: 'the MQTT username and client id: the device id' }),
        password: z.string().openapi({ description: "for the agent's `broker.passwordFile`; shown once" }),
        issuedAt: dateTime(),
      }),
      'issued',
    ),
    ...errorResponses(400, 415, 503),
  },
});

const forgetCredentials = createRoute({
  method: 'delete',
  path: '/devices/{id}/credentials',
  tags: ['fleet identity'],
  summary: "Forget a device's credentials",
  description: 'Its password stops working and the box may claim again (re-imaged); the device is not revoked.',
  request: { params: deviceIdParams },
  responses: { 200: json(z.object({ deviceId: deviceIdSchema, forgotten: z.boolean().openapi({ description: 'false: it had none' }) }), 'forgotten'), ...errorResponses(400, 404, 503) },
});

const revokeDevice = createRoute({
  method: 'post',
  path: '/devices/{id}/revoke',
  tags: ['fleet identity'],
  summary: 'Revoke a device',
  description: 'Its credentials are deleted, its live MQTT session ended, and its logins and claims refused until it is issued credentials again.',
  request: { params: deviceIdParams, body: jsonBody(revokeDeviceBody, false) },
  responses: {
    200: json(
      z.object({
        deviceId: deviceIdSchema,
        revokedAt: dateTime(),
        reason: z.string().nullable(),
        disconnected: z.boolean().openapi({ description: 'whether a live session was ended' }),
      }),
      'revoked',
    ),
    ...errorResponses(400, 404, 415, 503),
  },
});

const setLabels = createRoute({
  method: 'put',
  path: '/devices/{id}/labels',
  tags: ['fleet identity'],
  summary: "Replace a device's tags and groups",
  description: 'Rollouts select devices by them. A device not seen yet gets them when it first connects.',
  request: { params: deviceIdParams, body: jsonBody(deviceLabelsBody, true) },
  responses: { 200: json(deviceLabelsBody.extend({ deviceId: deviceIdSchema }), 'the labels now, sorted, duplicates collapsed'), ...errorResponses(400, 415, 503) },
});

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A claim token as the API shows it: never the secret, which only its creation returns. */
const claimTokenView = (t: ClaimTokenRecord) => ({
  id: t.id,
  name: t.name,
  maxUses: t.maxUses,
  uses: t.uses,
  expiresAt: iso(t.expiresAt),
  tags: t.tags,
  groups: t.groups,
  createdAt: new Date(t.createdAt).toISOString(),
  revokedAt: iso(t.revokedAt),
});

function toApiError(err: unknown): unknown {
  if (!(err instanceof IdentityError)) return err;
  if (err.code === 'invalid_request') return new ValidationError(err.message, err.field);
  return new NotFoundError(err.message);
}

/**
 * Fleet identity: claim tokens boxes provision themselves with, per-device
 * credentials an operator issues, revocation, and tags and groups.
 * Secrets (a claim token, a device password) are in the answer that made
 * them and nowhere else: the control plane keeps only their hashes.
 * Claim tokens, credentials and revocation are admin only (route-roles.ts).
 */
export function fleetIdentityRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const identity = async <T>(use: (service: DeviceIdentityService) => T | Promise<T>): Promise<T> => {
    if (!deps.identity) throw new ApiError(503, 'identity_unavailable', 'this control plane keeps no device identities');
    try {
      return await use(deps.identity);
    } catch (err) {
      throw toApiError(err);
    }
  };

  app.openapi(createClaimToken, async (c) => {
    const body = c.req.valid('json');
    const made = await identity((s) =>
      s.createClaimToken({
        name: body.name,
        maxUses: body.maxUses ?? null,
        expiresAt: body.expiresAt === undefined ? null : Date.parse(body.expiresAt),
        tags: body.tags ?? [],
        groups: body.groups ?? [],
      }),
    );
    c.set('auditTargets', { claimTokenId: made.record.id });
    return c.json({ ...claimTokenView(made.record), token: made.token }, 201);
  });

  app.openapi(listClaimTokens, async (c) => c.json({ claimTokens: (await identity((s) => s.claimTokens())).map(claimTokenView) }, 200));

  app.openapi(revokeClaimToken, async (c) => {
    const { id } = c.req.valid('param');
    return c.json(claimTokenView(await identity((s) => s.revokeClaimToken(id))), 200);
  });

  app.openapi(showIdentity, async (c) => {
    const d = await identity((s) => s.identity(c.req.valid('param').id));
    return c.json(
      {
        deviceId: d.deviceId,
        revoked: d.revoked ? { at: new Date(d.revoked.at).toISOString(), reason: d.revoked.reason } : null,
        credentials: d.credentials ? { issuedAt: new Date(d.credentials.issuedAt).toISOString(), usedAt: iso(d.credentials.usedAt), claimTokenId: d.credentials.claimTokenId } : null,
        tags: d.tags,
        groups: d.groups,
      },
      200,
    );
  });

  app.openapi(issueCredentials, async (c) => {
    const { id } = c.req.valid('param');
    const issued = await identity((s) => s.issueCredentials(id, c.req.valid('json')));
    return c.json({ deviceId: issued.deviceId, username: issued.username, password: issued.password, issuedAt: new Date(issued.issuedAt).toISOString() }, 201);
  });

  app.openapi(forgetCredentials, async (c) => {
    const { id } = c.req.valid('param');
    return c.json({ deviceId: id, forgotten: await identity((s) => s.forgetCredentials(id)) }, 200);
  });

  app.openapi(revokeDevice, async (c) => {
    const { id } = c.req.valid('param');
    const r = await identity((s) => s.revoke(id, c.req.valid('json').reason ?? null));
    return c.json({ deviceId: r.deviceId, revokedAt: new Date(r.revokedAt).toISOString(), reason: r.reason, disconnected: r.disconnected }, 200);
  });

  app.openapi(setLabels, async (c) => {
    const { id } = c.req.valid('param');
    const set = await identity((s) => s.setLabels(id, c.req.valid('json')));
    return c.json({ deviceId: id, ...set }, 200);
  });

  return app;
}
