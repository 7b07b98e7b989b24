import { Hono } from 'hono';
import { ApiError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';

/** Prometheus exposition at /metrics, outside /api/v1 like every exporter's. */
export function metricsRoutes(deps: ApiDeps) {
  const app = new Hono();
  app.get('/', async (c) => {
    if (!deps.metrics) throw new ApiError(503, 'unavailable', 'metrics are not running');
    return c.body(await deps.metrics.metrics(), 200, { 'content-type': deps.metrics.contentType });
  });
  return app;
}
