import { Hono } from 'hono';
import { ApiError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import type { ApiEnv } from '../api-env.js';
import { bearerAuth } from '../auth/bearer-auth.js';

/** `token`: a bearer token of at least viewer; `none`: open, for a scraper on a private network. */
export type MetricsAuth = 'token' | 'none';

/**
 * Prometheus exposition at /metrics, outside /api/v1 like every exporter's.
 * Counts only, but they tell a stranger the fleet's size and load, so a
 * token is needed unless the site turns that off. Not audited: a scraper
 * with a wrong token would add an entry every scrape.
 */
export function metricsRoutes(deps: ApiDeps, auth: MetricsAuth) {
  const app = new Hono<ApiEnv>();
  // GET needs viewer, the default role for reads (route-roles.ts).
  if (auth === 'token') app.use('*', bearerAuth(deps.tokens));
  app.get('/', async (c) => {
    if (!deps.metrics) throw new ApiError(503, 'unavailable', 'metrics are not running');
    return c.body(await deps.metrics.metrics(), 200, { 'content-type': deps.metrics.contentType });
  });
  return app;
}
