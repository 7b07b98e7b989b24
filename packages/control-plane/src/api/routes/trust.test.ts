import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../logger.js';
import { TufRepository, tufRepositoryPaths } from '../../trust/tuf-repository.js';
import type { ApiDeps } from '../api-deps.js';
import { errorHandler } from '../error-handler.js';
import { trustRoutes } from './trust.js';

const log = createLogger('silent');
let dataDir: string;
let repo: TufRepository;

function api(tuf: TufRepository | undefined): Hono {
  // Only what the trust routes reach.
  const deps = { log, ...(tuf ? { tuf } : {}) } as unknown as ApiDeps;
  const app = new Hono();
  app.onError(errorHandler(log));
  app.route('/trust', trustRoutes(deps));
  return app;
}

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'perch-trust-api-'));
  repo = new TufRepository({ ...tufRepositoryPaths(dataDir), log });
  await repo.open();
});
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('trust routes', () => {
  it('serves the current root, the file devices are provisioned with', async () => {
    const res = await api(repo).request('/trust/root');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(await repo.currentRoot());
  });

  it("rotates an online role's key in a new root", async () => {
    const before = repo.rootSummary().roles.timestamp!.keyids;
    const res = await api(repo).request('/trust/roles/timestamp/rotate-key', { method: 'POST' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { root: { version: number; roles: Record<string, { keyids: string[] }> } };
    expect(body.root.version).toBe(2);
    expect(body.root.roles.timestamp!.keyids).not.toEqual(before);
    const bad = await api(repo).request('/trust/roles/root/rotate-key', { method: 'POST' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: 'validation_failed', field: 'role' } });
  });

  it('revokes a key id, and says which ones it cannot', async () => {
    const desired = repo.rootSummary().roles.desired!.keyids[0]!;
    const res = await api(repo).request(`/trust/keys/${desired}/revoke`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { root: { roles: Record<string, { keyids: string[] }> } }).root.roles.desired!.keyids).not.toContain(desired);

    const unknown = await api(repo).request(`/trust/keys/${'0'.repeat(64)}/revoke`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'unknown_key' } });
    const malformed = await api(repo).request('/trust/keys/nothex/revoke', { method: 'POST' });
    expect(malformed.status).toBe(400);
  });

  it('is a conflict when the root keys are offline, and unavailable without a repository', async () => {
    await rm(tufRepositoryPaths(dataDir).rootKeyDir, { recursive: true });
    const res = await api(repo).request('/trust/roles/desired/rotate-key', { method: 'POST' });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'root_keys_offline' } });
    const none = await api(undefined).request('/trust/root');
    expect(none.status).toBe(503);
  });
});
