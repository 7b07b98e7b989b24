import type { MiddlewareHandler } from 'hono';
import { roleAtLeast } from '../../access/roles.js';
import type { ApiTokenStore } from '../../store/api-token-store.js';
import { ForbiddenError, UnauthorizedError } from '../api-error.js';
import type { ApiEnv } from '../api-env.js';
import { matchedRoute } from '../matched-route.js';
import { ADMIN_RULES, requiredAccess, type RoleRule } from './route-roles.js';

function bearerSecret(header: string | undefined): string | null {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1] ?? null;
}

/**
 * `Authorization: Bearer <token>` on every route it covers, but the public
 * ones; the route's required role (route-roles.ts) against the token's. The
 * secret is only hashed and looked up, never logged or kept.
 */
export function bearerAuth(tokens: ApiTokenStore, rules: readonly RoleRule[] = ADMIN_RULES): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const route = matchedRoute(c);
    const need = requiredAccess(c.req.method, route.pattern, rules);
    if (need === 'public') return next();
    const secret = bearerSecret(c.req.header('authorization'));
    if (secret === null) throw new UnauthorizedError('an API token is required: send Authorization: Bearer <token>');
    const token = tokens.authenticate(secret);
    if (!token) throw new UnauthorizedError('unknown API token');
    c.set('apiToken', token);
    if (token.revokedAt !== null) throw new UnauthorizedError(`API token ${token.id} was revoked`);
    if (!roleAtLeast(token.role, need)) {
      throw new ForbiddenError(`${c.req.method} ${route.pattern} needs role ${need}; token ${token.id} (${token.name}) has role ${token.role}`);
    }
    await next();
  };
}
