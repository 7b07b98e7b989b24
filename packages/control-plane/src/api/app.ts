import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ApiError } from './api-error.js';
import type { ApiDeps } from './api-deps.js';
import { errorHandler } from './error-handler.js';
import { artifactRoutes } from './routes/artifacts.js';
import { deviceRoutes } from './routes/devices.js';
import { modelRoutes } from './routes/models.js';
import { trustRoutes } from './routes/trust.js';

export interface ApiOptions {
  maxUploadBytes: number;
}

/** The REST API under /api/v1. */
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
  const v1 = new Hono();
  v1.get('/health', (c) => c.json({ status: 'ok' }));
  v1.route('/models', modelRoutes(deps));
  v1.route('/artifacts', artifactRoutes(deps));
  v1.route('/devices', deviceRoutes(deps));
  v1.route('/trust', trustRoutes(deps));
  app.route('/api/v1', v1);
  return app;
}
