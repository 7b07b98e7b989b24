import { createRoute, z } from '@hono/zod-openapi';
import { modelMetadataSchema, modelNameSchema, modelTargetSchema, modelVersionSchema, sha256Schema } from '@perch/shared';
import type { MiddlewareHandler } from 'hono';
import { ApiError, NotFoundError, parseOr400, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';
import type { ModelVersionRecord } from '../../store/model-version-store.js';

function versionView(v: ModelVersionRecord) {
  return {
    name: v.name,
    version: v.version,
    sha256: v.sha256,
    length: v.length,
    metadata: v.metadata,
    createdAt: new Date(v.createdAt).toISOString(),
    /** as TUF's targets.json lists it, signed there by the targets role */
    target: v.target,
  };
}

const versionViewSchema = z
  .object({
    name: modelNameSchema,
    version: modelVersionSchema,
    sha256: sha256Schema,
    length: z.number().int(),
    metadata: modelMetadataSchema,
    createdAt: z.string().openapi({ format: 'date-time' }),
    target: modelTargetSchema,
  })
  .openapi('ModelVersion');

const modelSummarySchema = z
  .object({ name: modelNameSchema, versions: z.number().int(), latestVersion: modelVersionSchema, latestCreatedAt: z.number().int().openapi({ description: 'ms since the epoch' }) })
  .openapi('ModelSummary');

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });

const nameParams = z.object({ name: modelNameSchema });

const uploadForm = z.object({
  version: modelVersionSchema,
  metadata: z.string().openapi({ description: 'the model metadata as JSON text: labels, input (name, size, layout, channel order), normalisation, output' }),
  file: z.file().openapi({ type: 'string', format: 'binary', description: 'the ONNX model' }),
});

const register = createRoute({
  method: 'post',
  path: '/{name}/versions',
  tags: ['models'],
  summary: 'Register a model version',
  description:
    'Upload as `multipart/form-data` (any other body is a 415). The file is loaded in onnxruntime and checked against the metadata, its golden output recorded, ' +
    "then it is stored content-addressed and added to TUF's targets.json. A mismatch is a 422 naming the field; nothing is stored.",
  request: { params: nameParams, body: { required: true, content: { 'multipart/form-data': { schema: uploadForm } } } },
  responses: { 201: json(versionViewSchema, 'registered'), ...errorResponses(400, 409, 413, 415, 422) },
});

const listModels = createRoute({
  method: 'get',
  path: '/',
  tags: ['models'],
  summary: 'Models, by name',
  request: { query: z.object({ limit: limitQuery(100), cursor: cursorQuery }) },
  responses: { 200: json(z.object({ models: z.array(modelSummarySchema), nextCursor: nextCursorSchema }), 'a page of models'), ...errorResponses(400) },
});

const listVersions = createRoute({
  method: 'get',
  path: '/{name}/versions',
  tags: ['models'],
  summary: "A model's versions, oldest first",
  request: { params: nameParams, query: z.object({ limit: limitQuery(100), cursor: cursorQuery }) },
  responses: { 200: json(z.object({ versions: z.array(versionViewSchema), nextCursor: nextCursorSchema }), 'a page of versions'), ...errorResponses(400, 404) },
});

const showVersion = createRoute({
  method: 'get',
  path: '/{name}/versions/{version}',
  tags: ['models'],
  summary: 'One model version',
  request: { params: nameParams.extend({ version: modelVersionSchema }) },
  responses: { 200: json(versionViewSchema, 'the version'), ...errorResponses(400, 404) },
});

// Before the form validator, so any other body gets this message instead of a bare 415.
const multipartOnly: MiddlewareHandler = async (c, next) => {
  if (!(c.req.header('content-type') ?? '').startsWith('multipart/form-data')) {
    throw new ApiError(415, 'unsupported_media_type', 'upload as multipart/form-data with fields version, metadata (JSON) and file (ONNX)');
  }
  await next();
};

const versionKey = z.tuple([z.number().int(), z.number().int()]);

/** Model registry: upload (multipart: `version`, `metadata` JSON, `file` ONNX), list, show. */
export function modelRoutes(deps: ApiDeps) {
  const app = apiRouter();

  app.openapi({ ...register, middleware: multipartOnly }, async (c) => {
    const { name } = c.req.valid('param');
    const form = c.req.valid('form');
    let metaRaw: unknown;
    try {
      metaRaw = JSON.parse(form.metadata);
    } catch (err) {
      throw new ValidationError(`metadata: malformed JSON: ${(err as Error).message}`, 'metadata');
    }
    const metadata = parseOr400(modelMetadataSchema, metaRaw, 'metadata.');
    const bytes = new Uint8Array(await form.file.arrayBuffer());
    const rec = await deps.registry.register(name, form.version, metadata, bytes);
    deps.log.info({ model: name, version: form.version, sha256: rec.sha256, length: rec.length }, 'model version registered');
    c.set('auditTargets', { version: form.version, sha256: rec.sha256 });
    return c.json(versionView(rec), 201);
  });

  app.openapi(listModels, (c) => {
    const { limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, z.string());
    const page = pageOf(deps.modelPages.models(after, limit + 1), limit, (m) => m.name);
    return c.json({ models: page.items, nextCursor: page.nextCursor }, 200);
  });

  app.openapi(listVersions, (c) => {
    const { name } = c.req.valid('param');
    const { limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, versionKey);
    const ids = deps.modelPages.versionIds(name, after ? { createdAt: after[0], id: after[1] } : null, limit + 1);
    if (ids.length === 0 && after === null) throw new NotFoundError(`no model named ${name}`);
    const records = ids.map((id) => deps.versions.byId(id)).filter((v): v is ModelVersionRecord => v !== null);
    const page = pageOf(records, limit, (v) => [v.createdAt, v.id]);
    return c.json({ versions: page.items.map(versionView), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(showVersion, (c) => {
    const { name, version } = c.req.valid('param');
    const v = deps.versions.get(name, version);
    if (!v) throw new NotFoundError(`model ${name} has no version ${version}`);
    return c.json(versionView(v), 200);
  });

  return app;
}
