import { createRoute, z } from '@hono/zod-openapi';
import { ONLINE_ROLES, TufRepositoryError, type TufRepository } from '../../trust/tuf-repository.js';
import { ApiError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';

const keyIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a key id: 32-byte lowercase hex');

const rootSummarySchema = z
  .object({
    version: z.number().int(),
    expires: z.string(),
    roles: z.record(z.string(), z.object({ keyids: z.array(z.string()), threshold: z.number().int() })),
  })
  .openapi('RootSummary');

const rootChange = (description: string) => ({ description, content: { 'application/json': { schema: z.object({ root: rootSummarySchema }) } } });

const root = createRoute({
  method: 'get',
  path: '/root',
  tags: ['trust'],
  summary: 'The current TUF root.json',
  description: "The file devices are provisioned with (the agent's `trust.rootFile`). Public, as TUF roots are: it holds public keys only.",
  responses: {
    200: {
      description: 'root.json as signed',
      content: { 'application/json': { schema: z.object({ signed: z.record(z.string(), z.unknown()), signatures: z.array(z.object({ keyid: z.string(), sig: z.string() })) }) } },
    },
    ...errorResponses(503),
  },
});

const rotateKey = createRoute({
  method: 'post',
  path: '/roles/{role}/rotate-key',
  tags: ['trust'],
  summary: "A fresh key for one online role, in a new root",
  description: 'Signed with the root keys at hand; with the root keys kept offline this is a 409 and the CLI (`perch-control-plane root rotate`) is the way.',
  request: { params: z.object({ role: z.enum(ONLINE_ROLES).openapi({ param: { name: 'role', in: 'path' } }) }) },
  responses: { 200: rootChange('the new root'), ...errorResponses(400, 409, 422, 503) },
});

const revokeKey = createRoute({
  method: 'post',
  path: '/keys/{keyid}/revoke',
  tags: ['trust'],
  summary: 'A new root without this key',
  description: 'An online role the key belonged to gets a fresh one.',
  request: { params: z.object({ keyid: keyIdSchema.openapi({ param: { name: 'keyid', in: 'path' } }) }) },
  responses: { 200: rootChange('the new root'), ...errorResponses(400, 404, 409, 422, 503) },
});

/** Repository refusals as API errors; a root change without its root keys at hand is a conflict the operator resolves with the key files. */
function toApiError(err: unknown): unknown {
  if (!(err instanceof TufRepositoryError)) return err;
  switch (err.code) {
    case 'unknown_key':
      return new ApiError(404, 'unknown_key', err.message, 'keyid');
    case 'root_signatures_missing':
      return new ApiError(409, 'root_keys_offline', `${err.message}. With the root keys kept offline, use \`perch-control-plane keys revoke\` or \`root rotate\` with the root key files`);
    case 'online_key_missing':
      return new ApiError(409, 'online_key_missing', err.message);
    case 'invalid_change':
      return new ApiError(422, 'invalid_change', err.message);
    case 'not_initialised':
      return new ApiError(503, 'trust_unavailable', err.message);
  }
}

/**
 * Trust: the TUF root devices are provisioned with (the agent's
 * `trust.rootFile`) and the changes of online keys that a running control
 * plane can sign itself.
 */
export function trustRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const tuf = async <T>(use: (repo: TufRepository) => Promise<T>): Promise<T> => {
    if (!deps.tuf) throw new ApiError(503, 'trust_unavailable', 'this control plane runs no TUF repository');
    try {
      return await use(deps.tuf);
    } catch (err) {
      throw toApiError(err);
    }
  };

  app.openapi(root, async (c) => c.json((await tuf((repo) => repo.currentRoot())) as { signed: Record<string, unknown>; signatures: { keyid: string; sig: string }[] }, 200));

  app.openapi(rotateKey, async (c) => {
    const { role } = c.req.valid('param');
    return c.json({ root: await tuf((repo) => repo.rotateOnlineKey(role)) }, 200);
  });

  app.openapi(revokeKey, async (c) => {
    const { keyid } = c.req.valid('param');
    return c.json({ root: await tuf((repo) => repo.revokeKey(keyid)) }, 200);
  });

  return app;
}
