import { createRoute, z } from '@hono/zod-openapi';
import { BackupExistsError, BackupInProgressError, type BackupFile, type BackupFolder, type CreatedBackup } from '../../store/backup-folder.js';
import { ApiError } from '../api-error.js';
import type { ApiDeps } from '../api-deps.js';
import { apiRouter } from '../openapi/api-router.js';
import { errorResponses } from '../openapi/error-responses.js';
import { cursorQuery, decodeCursor, limitQuery, nextCursorSchema, pageOf } from '../pagination.js';

const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } } });

const backupSchema = z
  .object({
    name: z.string().openapi({ description: 'the file in `<dataDir>/backups`', example: 'perch-20260131T020304123Z.db' }),
    bytes: z.number().int(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('Backup');

const createdBackupSchema = backupSchema
  .extend({
    pruned: z.array(z.string()).openapi({ description: 'older backups deleted to keep `backup.keep` of them, oldest first', example: ['perch-20260124T020304123Z.db'] }),
  })
  .openapi('CreatedBackup');

const createBackup = createRoute({
  method: 'post',
  path: '/backup',
  tags: ['admin'],
  summary: 'Back up the database',
  description:
    "An online copy of the SQLite database (one consistent snapshot, taken while ingest goes on) into the control plane's own `<dataDir>/backups`, " +
    'named by the control plane: no request names a path. One backup at a time (409 while one runs). The TUF keys, artifacts and secrets are files: back them up with it. ' +
    'Once it is written, the oldest backups beyond `backup.keep` (default 7; 0 keeps all) are deleted: only files the control plane named, never this one.',
  responses: { 201: json(createdBackupSchema, 'written'), ...errorResponses(409, 503) },
});

const listBackups = createRoute({
  method: 'get',
  path: '/backups',
  tags: ['admin'],
  summary: 'Backups in `<dataDir>/backups`, newest first',
  request: { query: z.object({ limit: limitQuery(100), cursor: cursorQuery }) },
  responses: { 200: json(z.object({ backups: z.array(backupSchema), nextCursor: nextCursorSchema }), 'a page of backups'), ...errorResponses(400, 503) },
});

const view = (b: BackupFile) => ({ name: b.name, bytes: b.bytes, createdAt: new Date(b.createdAt).toISOString() });

/** Operations on the control plane itself. Admin only (route-roles.ts: `/admin`). */
export function adminRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const backups = (): BackupFolder => {
    if (!deps.backups) throw new ApiError(503, 'unavailable', 'this control plane keeps no backups folder');
    return deps.backups;
  };

  app.openapi(createBackup, async (c) => {
    let made: CreatedBackup;
    try {
      made = await backups().create();
    } catch (err) {
      if (err instanceof BackupInProgressError) throw new ApiError(409, 'backup_in_progress', err.message);
      if (err instanceof BackupExistsError) throw new ApiError(409, 'backup_exists', err.message);
      throw err;
    }
    deps.log.info({ backup: made.name, bytes: made.bytes, pruned: made.pruned }, 'database backed up');
    if (made.pruneError !== null) deps.log.warn({ backup: made.name, err: made.pruneError }, 'an older backup could not be deleted; the next backup tries again');
    c.set('auditTargets', { backup: made.name });
    return c.json({ ...view(made), pruned: made.pruned }, 201);
  });

  app.openapi(listBackups, (c) => {
    const { limit, cursor } = c.req.valid('query');
    const after = decodeCursor(cursor, z.string());
    // Newest first, so the next page holds the names that sort before the last one seen.
    const rows = backups()
      .list()
      .filter((b) => after === null || b.name < after);
    const page = pageOf(rows.slice(0, limit + 1), limit, (b) => b.name);
    return c.json({ backups: page.items.map(view), nextCursor: page.nextCursor }, 200);
  });

  return app;
}
