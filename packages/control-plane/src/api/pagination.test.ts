import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../../agent/src/test-support/tiny-model.js';
import { startApiSite, type ApiSite } from '../test-support/api-site.js';

interface DevicePage {
  devices: { id: string; status: string }[];
  nextCursor: string | null;
}

let site: ApiSite;
const ids = Array.from({ length: 20 }, (_, i) => `pg-${String(i).padStart(2, '0')}`);
/** ids that a LIKE-based prefix filter would confuse with `pg_`: `_` must match itself only */
const lookalikes = ['pg_x1', 'pgX1'];

async function get<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await site.call(site.cp.adminToken, 'GET', path);
  return { status: res.status, body: (await res.json()) as T };
}

/** Every device a filter lists, walked page by page (from `start` when given). */
async function walk(query: string, limit: number, start: string | null = null): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = start;
  for (let pages = 0; pages < 100; pages++) {
    const { status, body }: { status: number; body: DevicePage } = await get<DevicePage>(`/api/v1/devices?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(status).toBe(200);
    expect(body.devices.length).toBeLessThanOrEqual(limit);
    seen.push(...body.devices.map((d) => d.id));
    cursor = body.nextCursor;
    if (!cursor) return seen;
  }
  throw new Error('more than 100 pages');
}

beforeAll(async () => {
  site = await startApiSite();
  for (const [i, id] of ids.entries()) {
    await site.cp.issueDeviceCredentials(id, { tags: i % 2 === 0 ? ['even'] : ['odd'], groups: i % 3 === 0 ? ['north'] : ['south'] });
    if (i % 4 === 0) site.cp.services.devices.setStatus({ deviceId: id, state: 'online', since: 0 });
  }
  for (const id of lookalikes) await site.cp.issueDeviceCredentials(id);
});
afterAll(async () => {
  await site.stop();
});

describe('device pages', () => {
  it('walk every device exactly once, in id order, whatever the page size', async () => {
    const all = [...ids, ...lookalikes].sort();
    for (const limit of [1, 3, 7, 22, 1000]) expect(await walk('', limit)).toEqual(all);
    const { body } = await get<DevicePage>('/api/v1/devices?limit=22');
    expect(body.nextCursor).toBeNull();
  });

  it('stay stable while devices are added: none repeated, none skipped that was there', async () => {
    const first = await get<DevicePage>('/api/v1/devices?limit=5');
    // One before the cursor and one after it.
    site.cp.services.devices.ensure('pg-00a');
    site.cp.services.devices.ensure('pg-99');
    const rest = await walk('', 5, first.body.nextCursor);
    const seen = [...first.body.devices.map((d) => d.id), ...rest];
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...ids, ...lookalikes, 'pg-99'].sort());
  });

  it('filter by status, tag, group and id prefix, each alone and together', async () => {
    const pick = (f: (i: number) => boolean) => ids.filter((_, i) => f(i));
    expect(await walk('&tag=even', 3)).toEqual(pick((i) => i % 2 === 0));
    expect(await walk('&group=north', 3)).toEqual(pick((i) => i % 3 === 0));
    expect(await walk('&status=online', 2)).toEqual(pick((i) => i % 4 === 0));
    expect(await walk('&tag=odd&group=north', 2)).toEqual(pick((i) => i % 2 === 1 && i % 3 === 0));
    expect(await walk('&q=pg-1', 4)).toEqual(pick((i) => i >= 10 && i < 20));
    expect(await walk('&q=pg_', 4)).toEqual(['pg_x1']);
    expect(await walk('&q=pg-0&status=online&tag=even', 4)).toEqual(['pg-00', 'pg-04', 'pg-08']);
  });

  it('take injection-shaped filter values as plain values: exact or empty, never an error', async () => {
    for (const v of ["' OR 1=1 --", '%', '_', '\\', 'pg%', 'pg-0_', "even' OR '1'='1", '"; DROP TABLE devices; --']) {
      for (const filter of ['tag', 'group', 'q']) {
        const { status, body } = await get<DevicePage>(`/api/v1/devices?${filter}=${encodeURIComponent(v)}`);
        expect(status, `${filter}=${v}`).toBe(200);
        expect(body.devices, `${filter}=${v}`).toEqual([]);
      }
      // status is one of a fixed set: anything else is a validation error naming it, not a 500.
      const { status, body } = await get<{ error: { code: string; field: string } }>(`/api/v1/devices?status=${encodeURIComponent(v)}`);
      expect(status).toBe(400);
      expect(body.error).toMatchObject({ code: 'validation_failed', field: 'status' });
    }
    // The table is still there and whole.
    expect((await walk('', 1000)).length).toBe(ids.length + lookalikes.length + 2);
  });

  it('refuse a cursor they did not give out, and limits out of range, naming the field', async () => {
    for (const [query, field] of [
      ['cursor=not-a-cursor', 'cursor'],
      [`cursor=${Buffer.from('[1,2]').toString('base64url')}`, 'cursor'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
    ] as const) {
      const { status, body } = await get<{ error: { field: string } }>(`/api/v1/devices?${query}`);
      expect(status, query).toBe(400);
      expect(body.error.field, query).toBe(field);
    }
  });
});

describe('model pages', () => {
  beforeAll(async () => {
    const register = async (name: string, version: string, gain: number) => {
      const m = buildTinyModel({ gain });
      const form = new FormData();
      form.set('version', version);
      form.set('metadata', JSON.stringify(m.metadata));
      form.set('file', new Blob([m.bytes]), 'model.onnx');
      const res = await fetch(`${site.base}/api/v1/models/${name}/versions`, { method: 'POST', body: form, headers: { authorization: `Bearer ${site.cp.adminToken}` } });
      expect(res.status, await res.clone().text()).toBe(201);
    };
    for (const [name, version, gain] of [
      ['m-b', '1.0.0', 2],
      ['m-a', '1.0.0', 3],
      ['m-a', '1.1.0', 4],
      ['m-c', '1.0.0', 5],
      ['m-a', '2.0.0', 6],
    ] as const) {
      await register(name, version, gain);
    }
  });

  async function walkAll<T>(path: string, key: string, limit: number): Promise<T[]> {
    const out: T[] = [];
    let cursor: string | null = null;
    do {
      const { status, body }: { status: number; body: Record<string, unknown> } = await get<Record<string, unknown>>(`${path}?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(status).toBe(200);
      out.push(...(body[key] as T[]));
      cursor = body['nextCursor'] as string | null;
    } while (cursor);
    return out;
  }

  it('list models by name and a model\'s versions oldest first, page by page', async () => {
    const models = await walkAll<{ name: string; versions: number; latestVersion: string }>('/api/v1/models', 'models', 2);
    expect(models.map((m) => [m.name, m.versions, m.latestVersion])).toEqual([
      ['m-a', 3, '2.0.0'],
      ['m-b', 1, '1.0.0'],
      ['m-c', 1, '1.0.0'],
    ]);
    const versions = await walkAll<{ version: string }>('/api/v1/models/m-a/versions', 'versions', 1);
    expect(versions.map((v) => v.version)).toEqual(['1.0.0', '1.1.0', '2.0.0']);
    expect((await get('/api/v1/models/m-z/versions')).status).toBe(404);
  });
});
