import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { AuditActor, AuditLogStore, AuditOutcome } from '../../store/audit-log-store.js';
import type { ApiEnv } from '../api-env.js';
import { matchedRoute } from '../matched-route.js';
import { summarizeRequestBody } from './request-summary.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The peer's address as the socket saw it; null when the app is called without a node server (tests calling `app.request`). */
function remoteAddress(c: Context): string | null {
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    return null;
  }
}

function outcomeOf(status: number): AuditOutcome {
  if (status === 401 || status === 403) return 'denied';
  return status < 400 ? 'ok' : 'failed';
}

/**
 * Records every change (any method but a read), done or not, and every
 * request refused by authentication or role, reads included: who (token id
 * and name), what (method + route pattern, route parameters as targets, a
 * redacted summary of the body), when, from where, and the status. Runs
 * outside the auth middleware so refusals pass through it too.
 */
export function auditTrail(audit: AuditLogStore, log: Logger): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    await next();
    const method = c.req.method.toUpperCase();
    const status = c.res.status;
    const outcome = outcomeOf(status);
    if (READS.has(method) && outcome !== 'denied') return;
    const token = c.get('apiToken');
    const actor: AuditActor = token ? { kind: 'token', tokenId: token.id, name: token.name } : { kind: 'anonymous', tokenId: null, name: 'anonymous' };
    const route = matchedRoute(c);
    try {
      audit.record({
        at: Date.now(),
        actor,
        action: `${method} ${route.pattern}`,
        path: c.req.path,
        target: { ...route.params, ...c.get('auditTargets') },
        status,
        outcome,
        remoteAddress: remoteAddress(c),
        // A refused caller's body is not read: it may be large, and it was not acted on.
        summary: outcome === 'denied' ? null : await summarizeRequestBody(c),
      });
    } catch (err) {
      // The change is done; a failed audit write is logged, not turned into a failed request.
      log.error({ err, action: `${method} ${route.pattern}` }, 'audit entry not recorded');
    }
  };
}
