import { createRoute, z } from '@hono/zod-openapi';
import type { AuditEntry } from '../../store/audit-log-store.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';

const OUTCOMES = ['ok', 'denied', 'failed'] as const;

/** An ISO 8601 time or ms since the epoch. */
const timeQuery = z
  .string()
  .refine((v) => (/^\d+$/.test(v) ? true : !Number.isNaN(Date.parse(v))), 'an ISO 8601 time or milliseconds since the epoch')
  .transform((v) => (/^\d+$/.test(v) ? Number(v) : Date.parse(v)))
  .openapi({ type: 'string', example: '2026-01-31T00:00:00Z' });

const auditEntrySchema = z
  .object({
    id: z.number().int(),
    at: z.string().openapi({ format: 'date-time' }),
    actor: z.object({
      kind: z.enum(['token', 'cli', 'anonymous']),
      tokenId: z.string().nullable(),
      name: z.string().openapi({ description: "the token's name, `cli` or `anonymous`" }),
    }),
    action: z.string().openapi({ description: 'method and route pattern, e.g. `PUT /api/v1/devices/:id/desired-model`, or a CLI command', example: 'DELETE /api/v1/tokens/:id' }),
    path: z.string(),
    target: z.record(z.string(), z.string()).openapi({ description: 'the ids the change is about (route parameters)' }),
    status: z.number().int().nullable().openapi({ description: 'the HTTP status; null for the CLI' }),
    outcome: z.enum(OUTCOMES).openapi({ description: 'ok; denied (authentication or role); failed (any other refusal or error)' }),
    remoteAddress: z.string().nullable(),
    summary: z.unknown().openapi({ description: 'the request body, redacted: secrets replaced, long values cut, files as name and size' }),
  })
  .openapi('AuditEntry');

const listAudit = createRoute({
  method: 'get',
  path: '/',
  tags: ['audit'],
  summary: 'The audit log, newest first',
  description: 'Every change made through the API or the CLI, and every request refused for want of a valid token or role.',
  request: {
    query: z.object({
      actor: z.string().min(1).max(128).optional().openapi({ description: 'a token id, or an actor name (a token name, `cli`, `anonymous`)' }),
      action: z.string().min(1).max(256).optional().openapi({ description: 'a prefix of the action: `DELETE`, `POST /api/v1/tokens`' }),
      outcome: z.enum(OUTCOMES).optional(),
      since: timeQuery.optional(),
      limit: limitQuery(100),
      cursor: cursorQuery,
    }),
  },
  responses: { 200: { description: 'a page of entries', content: { 'application/json': { schema: z.object({ entries: z.array(auditEntrySchema), nextCursor: nextCursorSchema }) } } }, ...errorResponses(400) },
});

const view = (e: AuditEntry) => ({ ...e, at: new Date(e.at).toISOString() });

/** `GET /audit`: who changed what, when, from where. Admin only (route-roles.ts). */
export function auditRoutes(deps: ApiDeps) {
  const app = apiRouter();
  app.openapi(listAudit, (c) => {
    const { actor, action, outcome, since, limit, cursor } = c.req.valid('query');
    const beforeId = decodeCursor(cursor, z.number().int().positive()) ?? undefined;
    const rows = deps.audit.query({ actor, action, outcome, since, beforeId, limit: limit + 1 });
    const page = pageOf(rows, limit, (e) => e.id);
    return c.json({ entries: page.items.map(view), nextCursor: page.nextCursor }, 200);
  });
  return app;
}
