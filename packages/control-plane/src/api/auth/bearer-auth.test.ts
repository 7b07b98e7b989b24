import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, startApiSite, type ApiSite } from '../../test-support/api-site.js';
import { requiredAccess } from './route-roles.js';

type ErrorBody = { error: { code: string; message: string; field?: string } };

describe('required role per route', () => {
  it('is viewer to read, operator to change, admin under the raised prefixes, none for the public routes', () => {
    expect(requiredAccess('GET', '/api/v1/devices/:id')).toBe('viewer');
    expect(requiredAccess('PUT', '/api/v1/devices/:id/desired-model')).toBe('operator');
    // A route someone adds later under no rule gets the default by method.
    expect(requiredAccess('POST', '/api/v1/some/new/thing')).toBe('operator');
    expect(requiredAccess('GET', '/api/v1/tokens')).toBe('admin');
    expect(requiredAccess('DELETE', '/api/v1/tokens/:id')).toBe('admin');
    expect(requiredAccess('GET', '/api/v1/claim-tokens')).toBe('admin');
    expect(requiredAccess('POST', '/api/v1/devices/:deviceId/revoke')).toBe('admin');
    expect(requiredAccess('DELETE', '/api/v1/devices/:id/credentials')).toBe('admin');
    expect(requiredAccess('POST', '/api/v1/trust/roles/:role/rotate-key')).toBe('admin');
    expect(requiredAccess('GET', '/api/v1/admin/anything/below')).toBe('admin');
    expect(requiredAccess('GET', '/api/v1/trust/root')).toBe('public');
    expect(requiredAccess('POST', '/api/v1/trust/root')).toBe('admin');
    expect(requiredAccess('GET', '/api/v1/health')).toBe('public');
    expect(requiredAccess('GET', '/api/v1/health/x')).toBe('viewer');
    expect(requiredAccess('GET', '/api/v1/openapi.json')).toBe('public');
    // A rule can only raise: an admin prefix does not lower a change below operator, and a GET under /trust stays viewer.
    expect(requiredAccess('GET', '/api/v1/trust/other')).toBe('viewer');
  });
});

describe('bearer auth on a running control plane', () => {
  let site: ApiSite;
  let viewer: string;
  let operator: string;

  beforeAll(async () => {
    site = await startApiSite();
    viewer = (await createToken(site, 'dashboard', 'viewer')).token;
    operator = (await createToken(site, 'ci', 'operator')).token;
  });
  afterAll(async () => {
    await site.stop();
  });

  it('answers 401 in the one error shape without a token, with an unknown one, or a malformed header', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer perch_not-a-token-we-know' }, { authorization: `Basic ${site.cp.adminToken}` }, { authorization: 'Bearer' }];
    for (const headers of attempts) {
      const res = await fetch(`${site.base}/api/v1/devices`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(((await res.json()) as ErrorBody).error.code).toBe('unauthorized');
    }
    // Routes nobody registered are refused before they are looked up.
    expect((await site.call(null, 'GET', '/api/v1/no-such-route')).status).toBe(401);
    expect((await site.call(site.cp.adminToken, 'GET', '/api/v1/no-such-route')).status).toBe(404);
  });

  it('lets the public routes through without a token', async () => {
    expect((await site.call(null, 'GET', '/api/v1/health')).status).toBe(200);
    expect((await site.call(null, 'GET', '/api/v1/openapi.json')).status).toBe(200);
    expect((await site.call(null, 'GET', '/api/v1/trust/root')).status).toBe(200);
    expect((await site.call(null, 'GET', '/api/docs')).status).toBe(200);
    // Only reads of them: a change under /trust needs a token.
    expect((await site.call(null, 'POST', '/api/v1/trust/roles/desired/rotate-key')).status).toBe(401);
  });

  it('lets a viewer read and refuses its changes with 403', async () => {
    expect((await site.call(viewer, 'GET', '/api/v1/devices')).status).toBe(200);
    expect((await site.call(viewer, 'GET', '/api/v1/models')).status).toBe(200);
    const put = await site.call(viewer, 'PUT', '/api/v1/devices/gate-1/desired-model', { model: null });
    expect(put.status).toBe(403);
    const body = (await put.json()) as ErrorBody;
    expect(body.error.code).toBe('forbidden');
    expect(body.error.message).toMatch(/needs role operator/);
    // Refused before the body is looked at: no validation error leaks what the route expects.
    expect((await site.call(viewer, 'PUT', '/api/v1/devices/gate-1/desired-model', { model: 3 })).status).toBe(403);
  });

  it('lets an operator change state but refuses it every admin route', async () => {
    expect((await site.call(operator, 'PUT', '/api/v1/devices/op-gate/desired-model', { model: null })).status).toBe(200);
    const adminOnly: [string, string, unknown?][] = [
      ['POST', '/api/v1/tokens', { name: 'x', role: 'viewer' }],
      ['GET', '/api/v1/tokens'],
      ['DELETE', '/api/v1/tokens/tok_0000000000000000'],
      ['GET', '/api/v1/audit'],
      ['POST', '/api/v1/trust/roles/desired/rotate-key'],
      ['POST', `/api/v1/trust/keys/${'0'.repeat(64)}/revoke`],
      ['POST', '/api/v1/claim-tokens', { name: 'box' }],
      ['GET', '/api/v1/claim-tokens'],
      ['DELETE', '/api/v1/claim-tokens/ct-none'],
      ['POST', '/api/v1/devices/op-gate/revoke', {}],
      ['POST', '/api/v1/devices/op-gate/credentials', {}],
      ['DELETE', '/api/v1/devices/op-gate/credentials'],
      ['POST', '/api/v1/admin/backup'],
      ['GET', '/api/v1/admin/backups'],
    ];
    for (const [method, path, body] of adminOnly) {
      const res = await site.call(operator, method, path, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(((await res.json()) as ErrorBody).error.message).toMatch(/needs role admin/);
    }
    // The same routes answer an admin (whatever their own answer is, it is not an auth refusal).
    for (const [method, path, body] of adminOnly) {
      const status = (await site.call(site.cp.adminToken, method, path, body)).status;
      expect([401, 403], `${method} ${path}`).not.toContain(status);
    }
  });

  it('refuses a revoked token with 401 from its next request on, and keeps the last admin token', async () => {
    const { id, token } = await createToken(site, 'short-lived', 'operator');
    expect((await site.call(token, 'GET', '/api/v1/devices')).status).toBe(200);
    const revoked = await site.call(site.cp.adminToken, 'DELETE', `/api/v1/tokens/${id}`);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { revokedAt: string | null }).revokedAt).toMatch(/^\d{4}-/);
    const after = await site.call(token, 'GET', '/api/v1/devices');
    expect(after.status).toBe(401);
    expect(((await after.json()) as ErrorBody).error.message).toMatch(/revoked/);

    const admins = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/tokens')).json()) as { tokens: { id: string; role: string }[] };
    const onlyAdmin = admins.tokens.filter((t) => t.role === 'admin');
    expect(onlyAdmin).toHaveLength(1);
    const last = await site.call(site.cp.adminToken, 'DELETE', `/api/v1/tokens/${onlyAdmin[0]!.id}`);
    expect(last.status).toBe(409);
    expect(((await last.json()) as ErrorBody).error.code).toBe('last_admin_token');
    expect((await site.call(site.cp.adminToken, 'DELETE', '/api/v1/tokens/tok_nope')).status).toBe(404);
  });

  it('shows a new secret once, and never lists secrets', async () => {
    const created = await createToken(site, 'once', 'viewer');
    expect(created.token).toMatch(/^perch_[A-Za-z0-9_-]{43}$/);
    const listed = await (await site.call(site.cp.adminToken, 'GET', '/api/v1/tokens?includeRevoked=true')).text();
    expect(listed).toContain(created.id);
    expect(listed).not.toContain(created.token);
    expect(listed).not.toContain(site.cp.adminToken);
    // Nor does the database hold one: only hashes.
    const stored = JSON.stringify(site.cp.db.prepare('SELECT * FROM api_tokens').all());
    expect(stored).not.toContain(created.token);
    expect(stored).not.toContain(site.cp.adminToken);
  });

  it('validates token requests, naming the field', async () => {
    const bad = await site.call(site.cp.adminToken, 'POST', '/api/v1/tokens', { name: 'x', role: 'root' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error).toMatchObject({ code: 'validation_failed', field: 'role' });
    const malformed = await fetch(`${site.base}/api/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${site.cp.adminToken}`, 'content-type': 'application/json' },
      body: '{"name": ',
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as ErrorBody).error).toMatchObject({ code: 'validation_failed', field: 'body' });
    const badParam = await site.call(site.cp.adminToken, 'GET', '/api/v1/devices/not%20an%20id');
    expect(((await badParam.json()) as ErrorBody).error).toMatchObject({ code: 'validation_failed', field: 'id' });
  });
});

describe('the first admin token', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('is written to <dataDir>/secrets/admin-token (0600) on first start and read back on the next', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'perch-admin-token-'));
    dirs.push(dir);
    const first = await startApiSite({}, dir);
    const token = first.cp.adminToken;
    const file = join(dir, 'secrets', 'admin-token');
    expect(first.cp.adminTokenFile).toBe(file);
    expect(readFileSync(file, 'utf8').trim()).toBe(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await first.cp.stop();
    const second = await startApiSite({}, dir);
    try {
      expect(second.cp.adminToken).toBe(token);
      expect((await second.call(token, 'GET', '/api/v1/tokens')).status).toBe(200);
      // Registered once, not once per start.
      const list = (await (await second.call(token, 'GET', '/api/v1/tokens')).json()) as { tokens: unknown[] };
      expect(list.tokens).toHaveLength(1);
    } finally {
      await second.cp.stop();
    }
  });

  it('comes from http.adminTokenFile when configured, and a short one is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'perch-admin-token-'));
    dirs.push(dir);
    const file = join(dir, 'admin.token');
    const secret = 'configured-admin-token-0123456789abcdef';
    writeFileSync(file, `${secret}\n`);
    const site = await startApiSite({ http: { adminTokenFile: file } }, join(dir, 'data'));
    try {
      expect(site.cp.adminToken).toBe(secret);
      expect((await site.call(secret, 'GET', '/api/v1/audit')).status).toBe(200);
    } finally {
      await site.cp.stop();
    }
    writeFileSync(file, 'too-short\n');
    await expect(startApiSite({ http: { adminTokenFile: file } }, join(dir, 'data2'))).rejects.toThrow(/at least 32 characters/);
  });
});
