import { createRoute, z } from '@hono/zod-openapi';
import { apiTokenView } from '../../access/api-token-view.js';
import { roleSchema } from '../../access/roles.js';
import { ApiError, NotFoundError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });

const tokenSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    role: roleSchema,
    createdAt: z.string().openapi({ format: 'date-time' }),
    createdBy: z.string().openapi({ description: 'the id of the token that created it, `cli`, or `bootstrap` / `config` for the first admin token' }),
    lastUsedAt: z.string().nullable().openapi({ format: 'date-time', description: 'to the minute' }),
    revokedAt: z.string().nullable().openapi({ format: 'date-time' }),
  })
  .openapi('ApiToken');

const tokenIdParams = z.object({ id: z.string().min(1).max(64).openapi({ param: { name: 'id', in: 'path' }, example: 'tok_0123456789abcdef' }) });

const createToken = createRoute({
  method: 'post',
  path: '/',
  tags: ['tokens'],
  summary: 'Create an API token',
  description: 'The secret is in this answer only; the control plane keeps its SHA-256.',
  request: {
    body: {
      required: true,
      content: { 'application/json': { schema: z.object({ name: z.string().trim().min(1).max(100), role: roleSchema }).openapi('NewApiToken') } },
    },
  },
  responses: {
    201: json(tokenSchema.extend({ token: z.string().openapi({ description: 'the secret, for `Authorization: Bearer`; shown once' }) }), 'created'),
    ...errorResponses(400, 415),
  },
});

const listTokens = createRoute({
  method: 'get',
  path: '/',
  tags: ['tokens'],
  summary: 'API tokens, oldest first (never their secrets)',
  request: {
    query: z.object({
      includeRevoked: z.enum(['true', 'false']).optional().openapi({ description: 'list revoked tokens too' }),
      limit: limitQuery(100),
      cursor: cursorQuery,
    }),
  },
  responses: { 200: json(z.object({ tokens: z.array(tokenSchema), nextCursor: nextCursorSchema }), 'a page of tokens'), ...errorResponses(400) },
});

const revokeToken = createRoute({
  method: 'delete',
  path: '/{id}',
  tags: ['tokens'],
  summary: 'Revoke an API token',
  description: 'From the next request on it is refused. The last admin token that is not revoked cannot be revoked here (409): that would lock every admin out.',
  request: { params: tokenIdParams },
  responses: { 200: json(tokenSchema, 'revoked'), ...errorResponses(404, 409) },
});

const tokenKey = z.tuple([z.number().int(), z.string()]);

/** API tokens: create (the secret shown once), list, revoke. Admin only (route-roles.ts). */
export function tokenRoutes(deps: ApiDeps) {
  const app = apiRouter();

  app.openapi(createToken, (c) => {
    const { name, role } = c.req.valid('json');
    const { record, secret } = deps.tokens.create({ name, role, createdBy: c.get('apiToken')?.id ?? 'unknown' });
    deps.log.info({ tokenId: record.id, name, role }, 'API token created');
    c.set('auditTargets', { tokenId: record.id });
    return c.json({ ...apiTokenView(record), token: secret }, 201);
  });

  app.openapi(listTokens, (c) => {
    const { includeRevoked, limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, tokenKey);
    const rows = deps.tokens.page({ after: after ? { createdAt: after[0], id: after[1] } : null, limit: limit + 1, includeRevoked: includeRevoked === 'true' });
    const page = pageOf(rows, limit, (t) => [t.createdAt, t.id]);
    return c.json({ tokens: page.items.map(apiTokenView), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(revokeToken, (c) => {
    const { id } = c.req.valid('param');
    const token = deps.tokens.get(id);
    if (!token) throw new NotFoundError(`no API token ${id}`);
    if (token.role === 'admin' && token.revokedAt === null && deps.tokens.activeAdmins() <= 1) {
      throw new ApiError(409, 'last_admin_token', `${id} is the last admin token; create another admin token first`);
    }
    const revoked = deps.tokens.revoke(id);
    deps.log.info({ tokenId: id }, 'API token revoked');
    return c.json(apiTokenView(revoked ?? token), 200);
  });

  return app;
}
