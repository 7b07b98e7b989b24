import type { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiEnv } from '../api-env.js';
import { requiredAccess, type RoleRule } from '../auth/route-roles.js';
import { errorBodySchema } from './error-responses.js';

type Document = ReturnType<OpenAPIHono['getOpenAPI31Document']>;
type Operation = Record<string, unknown> & { description?: string; responses?: Record<string, unknown> };

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;
const ERROR_REF = { $ref: '#/components/schemas/Error' };
const errorObject = (description: string) => ({ description, content: { 'application/json': { schema: ERROR_REF } } });

const DESCRIPTION = `Perch control plane: model registry, devices and their desired state, telemetry, trust.

**Authentication.** Every route but \`/health\`, \`/openapi.json\` and \`GET /trust/root\` needs \`Authorization: Bearer <token>\`.
The first start writes an admin token to \`<dataDir>/secrets/admin-token\`; more tokens come from \`POST /tokens\` or \`perch-control-plane tokens create\`.

**Roles.** viewer < operator < admin: reading needs viewer, changing needs operator, token management, the audit log, key rotation and
revocation, device revocation, claim tokens, device credentials and backups need admin. Each operation names its role in \`x-required-role\`.

**Errors** are always \`{ "error": { "code", "message", "field"? } }\`. **Lists** take \`limit\` and \`cursor\` and answer \`nextCursor\`.`;

/**
 * The OpenAPI 3.1 document of the routes in `v1`, with each operation's
 * security and required role taken from the same rules the auth middleware
 * enforces, so the document cannot drift from them.
 */
export function buildApiDocument(v1: OpenAPIHono<ApiEnv>, basePath: string, rules: readonly RoleRule[]): Document {
  v1.openAPIRegistry.register('Error', errorBodySchema);
  const doc = v1.getOpenAPI31Document({
    openapi: '3.1.0',
    info: { title: 'Perch control plane API', version: '1.0.0', description: DESCRIPTION },
    servers: [{ url: basePath, description: 'this control plane' }],
    security: [{ bearerAuth: [] }],
  });
  doc.components = {
    ...doc.components,
    securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'an API token (`perch_…`); its role decides what it may do' } },
  };
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    const pattern = `${basePath}${path.replace(/\{([^}]+)\}/g, ':$1')}`;
    for (const method of METHODS) {
      const op = (item as Record<string, Operation | undefined>)[method];
      if (!op) continue;
      const access = requiredAccess(method, pattern, rules);
      op['x-required-role'] = access;
      const responses = (op.responses ??= {});
      if (access === 'public') {
        op.security = [];
      } else {
        op.description = `${op.description ? `${op.description}\n\n` : ''}Requires role **${access}**.`;
        responses['401'] ??= errorObject('no API token, or an unknown or revoked one');
        responses['403'] ??= errorObject(`the token's role is below ${access}`);
      }
      responses['500'] ??= errorObject('internal error');
    }
  }
  return doc;
}

/** `GET {v1}/openapi.json`, built on first request, once every route is mounted. */
export function serveApiDocument(v1: OpenAPIHono<ApiEnv>, basePath: string, rules: readonly RoleRule[]): void {
  let doc: Document | null = null;
  v1.get('/openapi.json', (c) => c.json((doc ??= buildApiDocument(v1, basePath, rules)) as unknown as Record<string, unknown>));
}
