import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiSite, type ApiSite } from '../../test-support/api-site.js';

/**
 * Plain-Hono route files not converted to OpenAPI yet: their routes may be
 * missing from the document until they are. Remove a file's entry when it
 * is converted; any other route missing from the document fails the test.
 */
const ROUTES_PENDING_OPENAPI: Record<string, readonly string[]> = {};

/**
 * Not API operations: the document itself, the docs page's files, and
 * Prometheus' text exposition at /metrics (outside /api/v1 like every
 * exporter's; docs/control-plane-metrics.md describes it).
 */
const NOT_DOCUMENTED = (route: string) => route === 'GET /api/v1/openapi.json' || route.startsWith('GET /api/docs') || route === 'GET /metrics';

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
  security?: unknown[];
  'x-required-role'?: string;
  parameters?: { name: string; in: string }[];
}
interface Document {
  openapi: string;
  info: { title: string; version: string };
  servers: { url: string }[];
  components: { securitySchemes: Record<string, { type: string; scheme: string }>; schemas: Record<string, unknown> };
  security: unknown[];
  paths: Record<string, Record<string, Operation>>;
}

let site: ApiSite;
let doc: Document;

beforeAll(async () => {
  site = await startApiSite();
  const res = await site.call(null, 'GET', '/api/v1/openapi.json');
  expect(res.status).toBe(200);
  doc = (await res.json()) as Document;
});
afterAll(async () => {
  await site.stop();
});

/** `METHOD /api/v1/path/{param}` of every operation the document describes. */
function documented(): Set<string> {
  const base = doc.servers[0]!.url;
  return new Set(Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${base}${path}`)));
}

/** `METHOD /path/{param}` of every route the running app answers, whatever router it came from. */
function served(): Set<string> {
  return new Set(
    site.cp.services.api.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?/g, '{$1}')}`),
  );
}

describe('the OpenAPI document', () => {
  it('is OpenAPI 3.1 with info, the API as its server and bearer auth', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.title).toMatch(/Perch/);
    expect(doc.servers[0]!.url).toBe('/api/v1');
    expect(doc.components.securitySchemes['bearerAuth']).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }));
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
  });

  it('describes every route the app serves, and nothing it does not', () => {
    const pending = new Set(Object.values(ROUTES_PENDING_OPENAPI).flat());
    const routes = served();
    const spec = documented();
    const undocumented = [...routes].filter((r) => !spec.has(r) && !pending.has(r) && !NOT_DOCUMENTED(r));
    expect(undocumented, 'routes without an OpenAPI description (convert them, or list them in ROUTES_PENDING_OPENAPI)').toEqual([]);
    expect([...spec].filter((r) => !routes.has(r)), 'documented operations no route serves').toEqual([]);
    // A pending entry that is documented (converted) or gone should be removed from the list.
    expect([...pending].filter((r) => spec.has(r) || !routes.has(r)), 'stale ROUTES_PENDING_OPENAPI entries').toEqual([]);
  });

  it('gives every operation its error responses in the one shape, and the role the auth middleware enforces', () => {
    const errorRef = { $ref: '#/components/schemas/Error' };
    expect(doc.components.schemas['Error']).toBeDefined();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${path}`;
        const statuses = Object.keys(op.responses);
        expect(statuses.some((s) => s.startsWith('2')), where).toBe(true);
        for (const s of statuses.filter((x) => Number(x) >= 400)) expect(op.responses[s]!.content?.['application/json']?.schema, `${where} ${s}`).toEqual(errorRef);
        if (op['x-required-role'] === 'public') {
          expect(op.security, where).toEqual([]);
        } else {
          expect(['viewer', 'operator', 'admin'], where).toContain(op['x-required-role']);
          expect(statuses, where).toEqual(expect.arrayContaining(['401', '403']));
        }
        const params = (path.match(/\{([^}]+)\}/g) ?? []).map((p) => p.slice(1, -1));
        for (const p of params) expect(op.parameters?.some((x) => x.name === p && x.in === 'path'), `${where} names ${p}`).toBe(true);
      }
    }
    expect(doc.paths['/tokens']!['post']!['x-required-role']).toBe('admin');
    expect(doc.paths['/trust/root']!['get']!['x-required-role']).toBe('public');
    expect(doc.paths['/devices/{id}/desired-model']!['put']!['x-required-role']).toBe('operator');
    // Fleet identity: whatever hands out or takes away a device's access is admin only.
    expect(doc.paths['/claim-tokens']!['post']!['x-required-role']).toBe('admin');
    expect(doc.paths['/claim-tokens']!['get']!['x-required-role']).toBe('admin');
    expect(doc.paths['/claim-tokens/{id}']!['delete']!['x-required-role']).toBe('admin');
    expect(doc.paths['/devices/{id}/credentials']!['post']!['x-required-role']).toBe('admin');
    expect(doc.paths['/devices/{id}/credentials']!['delete']!['x-required-role']).toBe('admin');
    expect(doc.paths['/devices/{id}/revoke']!['post']!['x-required-role']).toBe('admin');
    expect(doc.paths['/devices/{id}/labels']!['put']!['x-required-role']).toBe('operator');
    expect(doc.paths['/devices/{id}/identity']!['get']!['x-required-role']).toBe('viewer');
    expect(doc.paths['/fleet/summary']!['get']!['x-required-role']).toBe('viewer');
  });

  it('describes the list parameters and the multipart upload', () => {
    const list = doc.paths['/devices']!['get']!.parameters!.map((p) => p.name);
    expect(list).toEqual(expect.arrayContaining(['status', 'tag', 'group', 'q', 'limit', 'cursor']));
    const upload = doc.paths['/models/{name}/versions']!['post'] as unknown as { requestBody: { content: Record<string, { schema: { properties: Record<string, { format?: string }> } }> } };
    const form = upload.requestBody.content['multipart/form-data']!.schema.properties;
    expect(Object.keys(form).sort()).toEqual(['file', 'metadata', 'version']);
    expect(form['file']!.format).toBe('binary');
    const rollups = doc.paths['/devices/{id}/telemetry/rollups']!['get']!.parameters!.map((p) => `${p.in} ${p.name}`);
    expect(rollups.sort()).toEqual(['path id', 'query from', 'query resolution', 'query to']);
  });
});

describe('interactive docs at /api/docs', () => {
  it('serve an HTML page that loads Swagger UI from this control plane only', async () => {
    const res = await site.call(null, 'GET', '/api/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const html = await res.text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThan(2);
    // Every asset is a path on this server: nothing from a CDN.
    for (const u of urls) expect(u, u).toMatch(/^\/api\/docs\//);
    for (const u of urls) {
      const asset = await site.call(null, 'GET', u);
      expect(asset.status, u).toBe(200);
    }
    const bundle = await site.call(null, 'GET', '/api/docs/swagger-ui-bundle.js');
    expect(bundle.headers.get('content-type')).toMatch(/javascript/);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
    const init = await (await site.call(null, 'GET', '/api/docs/init.js')).text();
    expect(init).toContain('"/api/v1/openapi.json"');
    // Swagger UI's default validator badge would post the document to validator.swagger.io.
    expect(init).toMatch(/validatorUrl: null/);
  });

  it('serve only the listed files of swagger-ui-dist', async () => {
    expect((await site.call(null, 'GET', '/api/docs/package.json')).status).toBe(404);
    expect((await site.call(null, 'GET', '/api/docs/..%2Fpackage.json')).status).toBe(404);
  });
});
