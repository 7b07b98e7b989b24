import { createRoute, z } from '@hono/zod-openapi';
import { apiRouter } from '../openapi/api-router.js';

const health = createRoute({
  method: 'get',
  path: '/',
  tags: ['health'],
  summary: 'Liveness: the API answers',
  responses: { 200: { description: 'up', content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } } } },
});

/** `GET /health`: answers without a token, for load balancers and service checks. */
export function healthRoutes() {
  return apiRouter().openapi(health, (c) => c.json({ status: 'ok' as const }, 200));
}
