import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ApiError } from './api-error.js';
import type { ApiDeps } from './api-deps.js';
import { auditTrail } from './audit/audit-trail.js';
import { bearerAuth } from './auth/bearer-auth.js';
import { ADMIN_RULES } from './auth/route-roles.js';
import { errorHandler } from './error-handler.js';
import { serveApiDocument } from './openapi/api-document.js';
import { apiRouter } from './openapi/api-router.js';
import { swaggerUiRoutes } from './openapi/swagger-ui.js';
import { adminRoutes } from './routes/admin.js';
import { artifactRoutes } from './routes/artifacts.js';
import { auditRoutes } from './routes/audit.js';
import { deviceRoutes } from './routes/devices.js';
import { fleetIdentityRoutes } from './routes/fleet-identity.js';
import { fleetTelemetryRoutes } from './routes/fleet-telemetry.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes, type MetricsAuth } from './routes/metrics.js';
import { modelRoutes } from './routes/models.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { tokenRoutes } from './routes/tokens.js';
import { trustRoutes } from './routes/trust.js';

export interface ApiOptions {
  maxUploadBytes: number;
  /** GET /metrics: a viewer token (`token`, the default) or none */
  metricsAuth?: MetricsAuth;
}

export const API_BASE = '/api/v1';
export const API_DOCS = '/api/docs';

/**
 * The REST API under /api/v1, its OpenAPI document at /api/v1/openapi.json
 * and interactive docs at /api/docs. Every route under /api/v1 passes the
 * audit trail and bearer auth first, whatever router it comes from (OpenAPI
 * or plain Hono), because both are registered before any route.
 */
export function createApi(deps: ApiDeps, opts: ApiOptions): Hono {
  const app = new Hono();
  app.onError(errorHandler(deps.log));
  app.notFound((c) => c.json(new ApiError(404, 'not_found', `no route ${c.req.method} ${c.req.path}`).toJSON(), 404));
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: opts.maxUploadBytes,
      onError: () => {
        throw new ApiError(413, 'payload_too_large', `request body over ${opts.maxUploadBytes} bytes`);
      },
    }),
  );

  const v1 = apiRouter();
  // Middleware first: a route registered before these would answer without them.
  v1.use('*', auditTrail(deps.audit, deps.log));
  v1.use('*', bearerAuth(deps.tokens, ADMIN_RULES));
  serveApiDocument(v1, API_BASE, ADMIN_RULES);

  // Route files, OpenAPI routers and plain Hono alike.
  v1.route('/health', healthRoutes());
  v1.route('/models', modelRoutes(deps));
  v1.route('/artifacts', artifactRoutes(deps));
  v1.route('/devices', deviceRoutes(deps));
  v1.route('/trust', trustRoutes(deps));
  v1.route('/tokens', tokenRoutes(deps));
  v1.route('/audit', auditRoutes(deps));
  v1.route('/rollouts', rolloutRoutes(deps));
  v1.route('/admin', adminRoutes(deps));
  v1.route('/', fleetIdentityRoutes(deps));
  v1.route('/', fleetTelemetryRoutes(deps));

  app.route(API_BASE, v1);
  app.route('/metrics', metricsRoutes(deps, opts.metricsAuth ?? 'token'));
  app.route(API_DOCS, swaggerUiRoutes(API_DOCS, `${API_BASE}/openapi.json`));
  return app;
}
