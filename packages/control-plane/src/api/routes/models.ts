import { modelMetadataSchema, modelNameSchema, modelVersionSchema } from '@perch/shared';
import { Hono } from 'hono';
import { ApiError, NotFoundError, parseOr400, ValidationError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
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

/** Model registry: upload (multipart: `version`, `metadata` JSON, `file` ONNX), list, show. */
export function modelRoutes(deps: ApiDeps) {
  const app = new Hono();

  app.post('/:name/versions', async (c) => {
    const name = parseOr400(modelNameSchema, c.req.param('name'), 'name');
    const type = c.req.header('content-type') ?? '';
    if (!type.startsWith('multipart/form-data')) {
      throw new ApiError(415, 'unsupported_media_type', 'upload as multipart/form-data with fields version, metadata (JSON) and file (ONNX)');
    }
    const form = await c.req.parseBody();
    const version = parseOr400(modelVersionSchema, form['version'], 'version');
    const metaText = form['metadata'];
    if (typeof metaText !== 'string') throw new ValidationError('metadata: a JSON text field is required', 'metadata');
    let metaRaw: unknown;
    try {
      metaRaw = JSON.parse(metaText);
    } catch (err) {
      throw new ValidationError(`metadata: malformed JSON: ${(err as Error).message}`, 'metadata');
    }
    const metadata = parseOr400(modelMetadataSchema, metaRaw, 'metadata.');
    const file = form['file'];
    if (!(file instanceof File)) throw new ValidationError('file: an ONNX file part is required', 'file');
    const bytes = new Uint8Array(await file.arrayBuffer());
    const rec = await deps.registry.register(name, version, metadata, bytes);
    deps.log.info({ model: name, version, sha256: rec.sha256, length: rec.length }, 'model version registered');
    return c.json(versionView(rec), 201);
  });

  app.get('/', (c) => c.json({ models: deps.versions.models() }));

  app.get('/:name/versions', (c) => {
    const name = parseOr400(modelNameSchema, c.req.param('name'), 'name');
    const list = deps.versions.versions(name);
    if (list.length === 0) throw new NotFoundError(`no model named ${name}`);
    return c.json({ versions: list.map(versionView) });
  });

  app.get('/:name/versions/:version', (c) => {
    const v = deps.versions.get(c.req.param('name'), c.req.param('version'));
    if (!v) throw new NotFoundError(`model ${c.req.param('name')} has no version ${c.req.param('version')}`);
    return c.json(versionView(v));
  });

  return app;
}
