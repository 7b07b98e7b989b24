import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Hono } from 'hono';
import { z } from 'zod';
import { encodeJpeg } from '../events/jpeg.js';
import type { SnapshotStore } from '../events/snapshot-store.js';
import type { Logger } from '../log/logger.js';
import type { AgentMetrics } from '../metrics/agent-metrics.js';
import type { HealthReport } from './health-check.js';
import { LocalHttpError, NotFoundError } from './http-error.js';
import type { LatestFrames } from './latest-frames.js';

export interface LocalAppSources {
  cameraIds: readonly string[];
  health(): HealthReport;
  metrics: AgentMetrics;
  frames: LatestFrames;
  /** the event snapshots on disk, when events keep them */
  snapshots: SnapshotStore | null;
  log: Logger;
}

const cameraParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/);
const JPEG_HEADERS = { 'content-type': 'image/jpeg', 'cache-control': 'no-store' };

/**
 * The agent's local endpoints: /healthz (readiness, 503 with reasons),
 * /metrics (Prometheus text), /snapshot/:camera (the camera's latest
 * inferred frame as JPEG) and /snapshots/:name (a stored event snapshot).
 */
export function createLocalApp(src: LocalAppSources): Hono {
  const app = new Hono();
  app.onError((err, c) => {
    const e = err instanceof LocalHttpError ? err : new LocalHttpError(500, 'internal', 'internal error');
    if (e.status >= 500 && e.status !== 503) src.log.error({ err: err.message, path: c.req.path }, 'local HTTP request failed');
    return c.json(e.toJSON(), e.status);
  });
  app.notFound((c) => c.json(new NotFoundError(`no route ${c.req.method} ${c.req.path}`).toJSON(), 404));

  app.get('/healthz', (c) => {
    const report = src.health();
    c.header('cache-control', 'no-store');
    return c.json(report, report.status === 'ok' ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    const text = await src.metrics.text();
    return c.body(text, 200, { 'content-type': src.metrics.contentType });
  });

  app.get('/snapshot/:camera', async (c) => {
    const id = c.req.param('camera');
    if (!cameraParam.safeParse(id).success || !src.cameraIds.includes(id)) throw new NotFoundError(`no camera ${JSON.stringify(id)}`);
    const latest = src.frames.get(id);
    if (!latest) throw new LocalHttpError(503, 'no_frame', `camera ${id} has no inferred frame yet`);
    const jpeg = await encodeJpeg(latest.frame, latest.width, latest.height);
    return c.body(new Uint8Array(jpeg), 200, {
      ...JPEG_HEADERS,
      'x-perch-frame-age-ms': String(Math.round(performance.now() - latest.arrivedAt)),
      'x-perch-label': latest.label,
      'x-perch-confidence': latest.confidence.toFixed(4),
    });
  });

  app.get('/snapshots/:name', async (c) => {
    const name = c.req.param('name');
    const path = src.snapshots?.path(name) ?? null;
    if (path === null) throw new NotFoundError(`no snapshot ${JSON.stringify(name)}`);
    const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      // Deleted to make room between the lookup and the read.
      if (err.code === 'ENOENT') throw new NotFoundError(`no snapshot ${JSON.stringify(name)}`);
      throw err;
    });
    return c.body(new Uint8Array(bytes), 200, JPEG_HEADERS);
  });

  return app;
}
