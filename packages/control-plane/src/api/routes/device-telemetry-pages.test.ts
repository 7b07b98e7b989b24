import { deviceTopic, encodeJson } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../../../test/support/wait-until.js';
import { startApiSite, type ApiSite } from '../../test-support/api-site.js';
import { telemetryWindow } from '../../test-support/telemetry-windows.js';

interface WindowPage {
  windows: { deviceId: string; seq: number; receivedAt: string | null }[];
  nextCursor: string | null;
}
interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

let site: ApiSite;
let cam: MqttClient;
let other: MqttClient;

async function connect(id: string): Promise<MqttClient> {
  const { username, password } = await site.cp.issueDeviceCredentials(id);
  return mqtt.connectAsync(`mqtt://127.0.0.1:${site.cp.mqttPort}`, { clientId: id, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
}

/** Sends windows over the device's own MQTT session and waits until the control plane has stored them. */
async function send(client: MqttClient, deviceId: string, seqs: number[]): Promise<void> {
  const before = site.cp.services.telemetry.count();
  for (const seq of seqs) await client.publishAsync(deviceTopic(deviceId, 'telemetry'), encodeJson(telemetryWindow(deviceId, seq)), { qos: 1 });
  await waitUntil(() => site.cp.services.telemetry.count() === before + seqs.length, `${seqs.length} windows of ${deviceId} stored`);
}

async function get<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await site.call(site.cp.adminToken, 'GET', path);
  return { status: res.status, body: (await res.json()) as T };
}

/** Every seq the device's telemetry lists, page by page from `start` (null: the first page). */
async function walk(limit: number, start: string | null = null): Promise<number[]> {
  const seen: number[] = [];
  let cursor = start;
  for (let pages = 0; pages < 200; pages++) {
    const q = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const { status, body } = await get<WindowPage>(`/api/v1/devices/cam-1/telemetry?${q}`);
    expect(status).toBe(200);
    expect(body.windows.length).toBeLessThanOrEqual(limit);
    for (const w of body.windows) expect(w.deviceId).toBe('cam-1');
    seen.push(...body.windows.map((w) => w.seq));
    cursor = body.nextCursor;
    if (cursor === null) return seen;
  }
  throw new Error('more than 200 pages');
}

// Seqs 0-29 but for a gap at 12-14 (lost in transit, or late).
const stored = Array.from({ length: 30 }, (_, i) => i).filter((s) => s < 12 || s > 14);
const newestFirst = (seqs: number[]) => [...seqs].sort((a, b) => b - a);

beforeAll(async () => {
  site = await startApiSite();
  cam = await connect('cam-1');
  other = await connect('cam-2');
  await send(cam, 'cam-1', stored);
  await send(other, 'cam-2', [0, 1, 2, 40]);
});
afterAll(async () => {
  await cam?.endAsync();
  await other?.endAsync();
  await site?.stop();
});

describe('GET /api/v1/devices/{id}/telemetry pages', () => {
  it('list every window of the device exactly once, newest first, whatever the page size', async () => {
    for (const limit of [1, 2, 5, 7, 26, 27, 1000]) expect(await walk(limit), `limit ${limit}`).toEqual(newestFirst(stored));
    // A page that holds the rest says it is the last.
    const { body } = await get<WindowPage>('/api/v1/devices/cam-1/telemetry?limit=27');
    expect(body.windows).toHaveLength(27);
    expect(body.nextCursor).toBeNull();
    expect(body.windows[0]!.receivedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('keep the newest 20 as the first page without a cursor, as before', async () => {
    const { body } = await get<WindowPage>('/api/v1/devices/cam-1/telemetry');
    expect(body.windows.map((w) => w.seq)).toEqual(newestFirst(stored).slice(0, 20));
    expect(body.nextCursor).not.toBeNull();
  });

  it('stay stable while windows arrive: newer ones do not shift later pages, a late one below the cursor is on them', async () => {
    const first = await get<WindowPage>('/api/v1/devices/cam-1/telemetry?limit=4');
    expect(first.body.windows.map((w) => w.seq)).toEqual([29, 28, 27, 26]);
    // Newer windows above the cursor, and the gap's windows arriving late, below it.
    await send(cam, 'cam-1', [30, 31, 12, 13, 14]);
    const rest = await walk(4, first.body.nextCursor);
    const seen = [...first.body.windows.map((w) => w.seq), ...rest];
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(newestFirst(Array.from({ length: 30 }, (_, i) => i)));
    expect(await walk(6)).toEqual(newestFirst(Array.from({ length: 32 }, (_, i) => i)));
  });

  it('refuse a cursor they did not give out, and limits out of range, in the one error shape naming the field', async () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const [query, field] of [
      ['cursor=not-a-cursor', 'cursor'],
      [`cursor=${b64('29')}`, 'cursor'],
      [`cursor=${b64(-1)}`, 'cursor'],
      [`cursor=${b64(1.5)}`, 'cursor'],
      [`cursor=${b64([29])}`, 'cursor'],
      [`cursor=${b64({ seq: 29 })}`, 'cursor'],
      ['cursor=', 'cursor'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
    ] as const) {
      const { status, body } = await get<ErrorBody>(`/api/v1/devices/cam-1/telemetry?${query}`);
      expect(status, query).toBe(400);
      expect(Object.keys(body), query).toEqual(['error']);
      expect(body.error, query).toMatchObject({ code: 'validation_failed', field });
      expect(typeof body.error.message, query).toBe('string');
    }
    expect((await get<ErrorBody>('/api/v1/devices/nobody/telemetry')).status).toBe(404);
  });

  it('are described in the OpenAPI document: limit and cursor in, nextCursor out', async () => {
    const doc = (await (await site.call(null, 'GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, { parameters: { name: string; in: string }[]; responses: Record<string, { content: Record<string, { schema: unknown }> }> }>>;
    };
    const op = doc.paths['/devices/{id}/telemetry']!['get']!;
    expect(op.parameters.filter((p) => p.in === 'query').map((p) => p.name).sort()).toEqual(['cursor', 'limit']);
    const ok = op.responses['200']!.content['application/json']!.schema as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(ok.properties).sort()).toEqual(['nextCursor', 'windows']);
    expect(ok.required).toEqual(expect.arrayContaining(['windows', 'nextCursor']));
    expect(Object.keys(op.responses).sort()).toEqual(expect.arrayContaining(['200', '400', '404']));
  });
});
