import { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiEnv } from '../api-env.js';
import { toValidationError } from '../api-error.js';

/**
 * The router every route file starts from: params, query and bodies are
 * checked against the route's zod schemas, and a failure is thrown as the
 * one validation error naming the field, for the app's one error handler.
 * Schemas from @perch/shared are made before this package extends zod, so
 * they have no `.openapi()`: describe the objects around them instead.
 */
export function apiRouter(): OpenAPIHono<ApiEnv> {
  return new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) throw toValidationError(result.error);
    },
  });
}
