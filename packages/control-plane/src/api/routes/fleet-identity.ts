import { deviceIdSchema } from '@perch/shared';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { IdentityError, type DeviceIdentityService } from '../../identity/device-identity-service.js';
import { labelSchema } from '../../identity/device-labels.js';
import type { ClaimTokenRecord } from '../../store/claim-token-store.js';
import { ApiError, NotFoundError, parseOr400, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';

const labels = z.array(labelSchema).max(64);

export const claimTokenIdParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a claim token id');
export const deviceIdParam = deviceIdSchema;

export const createClaimTokenBody = z.object({
  name: z.string().trim().min(1).max(128),
  /** absent: unlimited */
  maxUses: z.number().int().positive().optional(),
  /** absent: never */
  expiresAt: z.iso.datetime({ offset: true }).optional(),
  /** given to every device that claims with the token */
  tags: labels.optional(),
  groups: labels.optional(),
});

export const provisionDeviceBody = z.object({ tags: labels.optional(), groups: labels.optional() });

export const revokeDeviceBody = z.object({ reason: z.string().trim().min(1).max(500).optional() });

export const deviceLabelsBody = z.object({ tags: labels, groups: labels });

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
  createdAt: iso(t.createdAt),
  revokedAt: iso(t.revokedAt),
});

function toApiError(err: unknown): unknown {
  if (!(err instanceof IdentityError)) return err;
  if (err.code === 'invalid_request') return new ValidationError(err.message, err.field);
  return new NotFoundError(err.message);
}

/** A JSON body; an empty one is `{}` where every field is optional. */
async function jsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ValidationError('body: malformed JSON');
  }
}

/**
 * Fleet identity: claim tokens boxes provision themselves with, per-device
 * credentials an operator issues, revocation, and tags and groups.
 * Secrets (a claim token, a device password) are in the answer that made
 * them and nowhere else: the control plane keeps only their hashes.
 */
export function fleetIdentityRoutes(deps: ApiDeps) {
  const app = new Hono();

  const identity = async <T>(use: (service: DeviceIdentityService) => T | Promise<T>): Promise<T> => {
    if (!deps.identity) throw new ApiError(503, 'identity_unavailable', 'this control plane keeps no device identities');
    try {
      return await use(deps.identity);
    } catch (err) {
      throw toApiError(err);
    }
  };

  app.post('/claim-tokens', async (c) => {
    const body = parseOr400(createClaimTokenBody, await jsonBody(c));
    const made = await identity((s) =>
      s.createClaimToken({
        name: body.name,
        maxUses: body.maxUses ?? null,
        expiresAt: body.expiresAt === undefined ? null : Date.parse(body.expiresAt),
        tags: body.tags ?? [],
        groups: body.groups ?? [],
      }),
    );
    return c.json({ ...claimTokenView(made.record), token: made.token }, 201);
  });

  app.get('/claim-tokens', async (c) => c.json({ claimTokens: (await identity((s) => s.claimTokens())).map(claimTokenView) }));

  // Revoked, not deleted: the devices claimed with it keep its id in their credentials.
  app.delete('/claim-tokens/:id', async (c) => {
    const id = parseOr400(claimTokenIdParam, c.req.param('id'), 'id');
    return c.json(claimTokenView(await identity((s) => s.revokeClaimToken(id))));
  });

  app.get('/devices/:id/identity', async (c) => {
    const id = parseOr400(deviceIdParam, c.req.param('id'), 'id');
    const d = await identity((s) => s.identity(id));
    return c.json({
      deviceId: d.deviceId,
      revoked: d.revoked ? { at: iso(d.revoked.at), reason: d.revoked.reason } : null,
      credentials: d.credentials ? { issuedAt: iso(d.credentials.issuedAt), usedAt: iso(d.credentials.usedAt), claimTokenId: d.credentials.claimTokenId } : null,
      tags: d.tags,
      groups: d.groups,
    });
  });

  // Fresh credentials, replacing old ones; also how a revoked device is let back in.
  app.post('/devices/:id/credentials', async (c) => {
    const id = parseOr400(deviceIdParam, c.req.param('id'), 'id');
    const body = parseOr400(provisionDeviceBody, await jsonBody(c));
    const issued = await identity((s) => s.provision(id, body));
    return c.json({ deviceId: issued.deviceId, username: issued.username, password: issued.password, issuedAt: iso(issued.issuedAt) }, 201);
  });

  // The box may claim again (re-imaged); the device is not revoked.
  app.delete('/devices/:id/credentials', async (c) => {
    const id = parseOr400(deviceIdParam, c.req.param('id'), 'id');
    return c.json({ deviceId: id, forgotten: await identity((s) => s.forgetCredentials(id)) });
  });

  app.post('/devices/:id/revoke', async (c) => {
    const id = parseOr400(deviceIdParam, c.req.param('id'), 'id');
    const body = parseOr400(revokeDeviceBody, await jsonBody(c));
    const r = await identity((s) => s.revoke(id, body.reason ?? null));
    return c.json({ deviceId: r.deviceId, revokedAt: iso(r.revokedAt), reason: r.reason, disconnected: r.disconnected });
  });

  app.put('/devices/:id/labels', async (c) => {
    const id = parseOr400(deviceIdParam, c.req.param('id'), 'id');
    const body = parseOr400(deviceLabelsBody, await jsonBody(c));
    const set = await identity((s) => s.setLabels(id, body));
    return c.json({ deviceId: id, ...set });
  });

  return app;
}
