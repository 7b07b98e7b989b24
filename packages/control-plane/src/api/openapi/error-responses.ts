import { z } from '@hono/zod-openapi';

/** The one error shape (api-error.ts), as the document describes it. */
export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'validation_failed' }),
      message: z.string(),
      field: z.string().optional().openapi({ description: 'the parameter or body field at fault, dotted (e.g. `metadata.input.layout`)' }),
    }),
  })
  .openapi('Error');

const DESCRIPTIONS = {
  400: 'validation failed; `field` names the parameter or body field at fault',
  401: 'no API token, or an unknown or revoked one',
  403: "the token's role is below what the route needs",
  404: 'not found',
  409: 'conflict',
  413: 'request body over the limit',
  415: 'unsupported media type',
  422: 'well-formed but refused',
  500: 'internal error',
  503: 'unavailable',
} as const;

export type ErrorStatus = keyof typeof DESCRIPTIONS;

export function errorResponse(status: ErrorStatus, description: string = DESCRIPTIONS[status]) {
  return { description, content: { 'application/json': { schema: errorBodySchema } } };
}

/** Error responses of a route, in the one shape; 401, 403 and 500 are added to every operation by the document itself. */
export function errorResponses<S extends ErrorStatus>(...statuses: S[]): Record<S, ReturnType<typeof errorResponse>> {
  return Object.fromEntries(statuses.map((s) => [s, errorResponse(s)])) as Record<S, ReturnType<typeof errorResponse>>;
}
