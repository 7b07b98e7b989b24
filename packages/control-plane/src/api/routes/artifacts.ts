import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { sha256Schema } from '@perch/shared';
import { Hono } from 'hono';
import { NotFoundError, parseOr400 } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';

/**
 * `GET /artifacts/{sha256}`: a registered model file or chunk manifest as
 * plain bytes, for tools and for comparing MQTT delivery with HTTP. Devices
 * fetch over MQTT; they need no port open to the control plane but 1883.
 */
export function artifactRoutes(deps: ApiDeps) {
  const app = new Hono();

  app.get('/:sha256', (c) => {
    const sha256 = parseOr400(sha256Schema, c.req.param('sha256'), 'sha256');
    if (!deps.versions.hasArtifact(sha256) || !deps.artifacts.has(sha256)) throw new NotFoundError(`no registered artifact with sha256 ${sha256}`);
    const stream = Readable.toWeb(createReadStream(deps.artifacts.pathOf(sha256), { highWaterMark: 1024 * 1024 })) as ReadableStream<Uint8Array>;
    return c.body(stream, 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(deps.artifacts.size(sha256)),
      etag: `"${sha256}"`,
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });

  return app;
}
