import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, startApiSite, type ApiSite } from '../../test-support/api-site.js';
import { redact } from './request-summary.js';

interface Entry {
  id: number;
  at: string;
  actor: { kind: string; tokenId: string | null; name: string };
  action: string;
  path: string;
  target: Record<string, string>;
  status: number | null;
  outcome: string;
  remoteAddress: string | null;
  summary: unknown;
}
type Page = { entries: Entry[]; nextCursor: string | null };

let site: ApiSite;
let operator: { id: string; token: string };
let viewer: { id: string; token: string };
let startedAt: number;

async function audit(query = ''): Promise<Page> {
  const res = await site.call(site.cp.adminToken, 'GET', `/api/v1/audit${query}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Page;
}

beforeAll(async () => {
  site = await startApiSite();
  startedAt = Date.now();
  operator = await createToken(site, 'release-bot', 'operator');
  viewer = await createToken(site, 'wallboard', 'viewer');
});
afterAll(async () => {
  await site.stop();
});

describe('the audit log', () => {
  it('records a change with who, what, which target, when, from where and how it ended', async () => {
    const res = await site.call(operator.token, 'PUT', '/api/v1/devices/gate-9/desired-model', { model: null, rollback: false });
    expect(res.status).toBe(200);
    const [entry] = (await audit(`?actor=${operator.id}&limit=1`)).entries;
    expect(entry).toMatchObject({
      actor: { kind: 'token', tokenId: operator.id, name: 'release-bot' },
      action: 'PUT /api/v1/devices/:id/desired-model',
      path: '/api/v1/devices/gate-9/desired-model',
      target: { id: 'gate-9' },
      status: 200,
      outcome: 'ok',
      remoteAddress: '127.0.0.1',
      summary: { model: null, rollback: false },
    });
    expect(Date.parse(entry!.at)).toBeGreaterThanOrEqual(startedAt);
  });

  it('records refused attempts: no token, a bad token, too low a role, and failed validation', async () => {
    await site.call(null, 'POST', '/api/v1/tokens', { name: 'sneaky', role: 'admin' });
    await site.call('perch_forged', 'DELETE', '/api/v1/tokens/tok_1');
    await site.call(viewer.token, 'PUT', '/api/v1/devices/gate-9/desired-model', { model: null });
    // A read refused for its role is recorded too; a read allowed is not.
    await site.call(viewer.token, 'GET', '/api/v1/audit');
    await site.call(viewer.token, 'GET', '/api/v1/devices');
    await site.call(operator.token, 'PUT', '/api/v1/devices/gate-9/desired-model', { model: 3 });

    const denied = (await audit('?outcome=denied')).entries;
    expect(denied.map((e) => [e.actor.name, e.action, e.status])).toEqual([
      ['wallboard', 'GET /api/v1/audit', 403],
      ['wallboard', 'PUT /api/v1/devices/:id/desired-model', 403],
      ['anonymous', 'DELETE /api/v1/tokens/:id', 401],
      ['anonymous', 'POST /api/v1/tokens', 401],
    ]);
    // A refused caller's body is not kept.
    expect(denied.every((e) => e.summary === null)).toBe(true);
    const failed = (await audit(`?actor=release-bot&outcome=failed`)).entries;
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ status: 400, summary: { model: 3 } });
    expect((await audit('?action=GET /api/v1/devices')).entries).toEqual([]);
  });

  it('keeps secrets out: request bodies are redacted summaries, returned secrets are never stored', async () => {
    const made = await createToken(site, 'secret-bearer', 'viewer');
    // A body naming secrets, as a client of a route added later might send.
    await site.call(operator.token, 'POST', '/api/v1/some/new/route', { password: 'hunter2-hunter2', nested: { apiKey: 'abc', note: `use ${made.token}` }, big: 'x'.repeat(5000) });
    const stored = JSON.stringify(site.cp.db.prepare('SELECT * FROM audit_log').all());
    for (const secret of [made.token, site.cp.adminToken, operator.token, viewer.token, 'hunter2-hunter2', 'abc"']) expect(stored).not.toContain(secret);
    const [entry] = (await audit('?action=POST /api/v1/some/new/route')).entries;
    expect(entry).toMatchObject({ status: 404, outcome: 'failed', summary: { password: '[redacted]', nested: { apiKey: '[redacted]', note: 'use [redacted]' } } });
    expect(JSON.stringify(entry!.summary).length).toBeLessThan(500);
    const creation = (await audit('?action=POST /api/v1/tokens&outcome=ok')).entries[0];
    expect(creation).toMatchObject({ target: { tokenId: made.id }, summary: { name: 'secret-bearer', role: 'viewer' } });
  });

  it('summarises a model upload by its fields, the file by name and size', async () => {
    const form = new FormData();
    form.set('version', '1.0.0');
    form.set('metadata', '{"labels": ["a"]}');
    form.set('file', new Blob([new Uint8Array(1234)]), 'model.onnx');
    const res = await fetch(`${site.base}/api/v1/models/demo/versions`, { method: 'POST', body: form, headers: { authorization: `Bearer ${operator.token}` } });
    expect(res.status).toBe(400);
    const [entry] = (await audit('?action=POST /api/v1/models')).entries;
    expect(entry).toMatchObject({ target: { name: 'demo' }, summary: { version: '1.0.0', metadata: '{"labels": ["a"]}', file: { file: 'model.onnx', bytes: 1234 } } });
  });

  it('filters by actor, action prefix, outcome and time, and pages newest first without repeats', async () => {
    const all: Entry[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await audit(`?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(page.entries.length).toBeLessThanOrEqual(3);
      all.push(...page.entries);
      cursor = page.nextCursor;
    } while (cursor);
    const ids = all.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(ids.length).toBe((await audit('?limit=1000')).entries.length);

    expect((await audit('?action=DELETE')).entries.every((e) => e.action.startsWith('DELETE '))).toBe(true);
    expect((await audit(`?since=${new Date(Date.now() + 60_000).toISOString()}`)).entries).toEqual([]);
    expect((await audit(`?since=${startedAt}`)).entries.length).toBe(ids.length);
    const bad = await site.call(site.cp.adminToken, 'GET', '/api/v1/audit?since=yesterday');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { field: string } }).error.field).toBe('since');
  });

  it('takes injection-shaped filters as plain values', async () => {
    for (const v of ["' OR 1=1 --", '%', '_', '\\', '"; DROP TABLE audit_log; --']) {
      const q = encodeURIComponent(v);
      expect((await audit(`?actor=${q}`)).entries, v).toEqual([]);
      expect((await audit(`?action=${q}`)).entries, v).toEqual([]);
    }
    expect((await audit('?limit=1')).entries).toHaveLength(1);
  });
});

describe('redact', () => {
  it('replaces secret-named keys at any depth, cuts long values and keeps the rest', () => {
    expect(redact({ name: 'n', token: 't', deep: { clientSecret: 's', list: [{ privateKey: 'k' }] }, n: 3 })).toEqual({
      name: 'n',
      token: '[redacted]',
      deep: { clientSecret: '[redacted]', list: [{ privateKey: '[redacted]' }] },
      n: 3,
    });
    expect(String(redact('y'.repeat(1000)))).toMatch(/\(1000 chars\)$/);
    expect(redact(Array.from({ length: 50 }, (_, i) => i))).toHaveLength(21);
  });
});
