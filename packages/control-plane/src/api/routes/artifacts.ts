import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createRoute, z } from '@hono/zod-openapi';
import { sha256Schema } from '@perch/shared';
import { NotFoundError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';

const artifact = createRoute({
  method: 'get',
  path: '/{sha256}',
  tags: ['artifacts'],
  summary: 'A registered model file or chunk manifest, as bytes',
  request: { params: z.object({ sha256: sha256Schema }) },
  responses: {
    200: {
      description: 'the bytes; immutable (content-addressed)',
      content: { 'application/octet-stream': { schema: z.string().openapi({ type: 'string', format: 'binary' }) } },
    },
    ...errorResponses(400, 404),
  },
});

/**
 * `GET /artifacts/{sha256}`: a registered model file or chunk manifest as
 * plain bytes, for tools and for comparing MQTT delivery with HTTP. Devices
 * fetch over MQTT; they need no port open to the control plane but 1883.
 */
export function artifactRoutes(deps: ApiDeps) {
  const app = apiRouter();

  app.openapi(artifact, (c) => {
    const { sha256 } = c.req.valid('param');
    if (!deps.versions.hasArtifact(sha256) || !deps.artifacts.has(sha256)) throw new NotFoundError(`no registered artifact with sha256 ${sha256}`);
    const stream = Readable.toWeb(createReadStream(deps.artifacts.pathOf(sha256), { highWaterMark: 1024 * 1024 })) as ReadableStream<Uint8Array>;
    return c.body(stream, 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(deps.artifacts.size(sha256)),
      etag: `"${sha256}"`,
      // private: behind a token, so no shared cache may keep it
      'cache-control': 'private, max-age=31536000, immutable',
    });
  });

  return app;
}
