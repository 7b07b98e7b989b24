import { Hono } from 'hono';
import { z } from 'zod';
import { ONLINE_ROLES, TufRepositoryError, type TufRepository } from '../../trust/tuf-repository.js';
import { ApiError, parseOr400 } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';

const onlineRoleSchema = z.enum(ONLINE_ROLES);
const keyIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a key id: 32-byte lowercase hex');

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
  const app = new Hono();

  const tuf = async <T>(use: (repo: TufRepository) => Promise<T>): Promise<T> => {
    if (!deps.tuf) throw new ApiError(503, 'trust_unavailable', 'this control plane runs no TUF repository');
    try {
      return await use(deps.tuf);
    } catch (err) {
      throw toApiError(err);
    }
  };

  /** The current root.json: the file devices are provisioned with. */
  app.get('/root', async (c) => c.json(await tuf((repo) => repo.currentRoot())));

  /** A fresh key for one online role, in a new root signed with the root keys at hand. */
  app.post('/roles/:role/rotate-key', async (c) => {
    const role = parseOr400(onlineRoleSchema, c.req.param('role'), 'role');
    return c.json({ root: await tuf((repo) => repo.rotateOnlineKey(role)) });
  });

  /** A new root without the key; an online role it belonged to gets a fresh one. */
  app.post('/keys/:keyid/revoke', async (c) => {
    const keyid = parseOr400(keyIdSchema, c.req.param('keyid'), 'keyid');
    return c.json({ root: await tuf((repo) => repo.revokeKey(keyid)) });
  });
  return app;
}
