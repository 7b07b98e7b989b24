import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlaneConfigInput } from '../config/control-plane-config.js';
import { createToken, startApiSite, type ApiSite } from '../test-support/api-site.js';
import type { RolloutEventMessage } from './rollout-events.js';
import { registerTiny } from './test-support/tiny-classifier.js';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, webhookSignature } from './webhook-delivery.js';

/**
 * Rollout webhook deliveries survive a restart: with the receiver down,
 * rollout events happen on a real control plane (HTTP, SQLite, broker) and
 * are tried in vain; the control plane stops; a new one on the same data
 * directory starts with the receiver up, and every event arrives once, in
 * the order of the rollout's history, signed with the webhook's secret.
 */
const SECRET = 'the-receivers-shared-secret';

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

let work: string;
let dataDir: string;
let site: ApiSite | null = null;
let receiver: Server | null = null;
let port: number;
const received: Received[] = [];

function overrides(): ControlPlaneConfigInput {
  return {
    rollouts: {
      tickSeconds: 0.2,
      webhooks: [{ url: `http://127.0.0.1:${port}/hooks/perch`, secretFile: join(work, 'webhook-secret') }],
      // Quick retries, and enough of them that none is given up while the receiver is down.
      webhookDelivery: { retryBaseSeconds: 0.05, retryMaxSeconds: 0.2, maxAttempts: 10_000 },
    },
  };
}

function listen(server: Server, on: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(on, '127.0.0.1', () => resolve());
  });
}

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'perch-webhook-restart-'));
  dataDir = join(work, 'cp');
  writeFileSync(join(work, 'webhook-secret'), `${SECRET}\n`);
  // A port for the receiver, closed again: down until the second control plane starts.
  const probe = createServer();
  await listen(probe, 0);
  port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
});

afterAll(async () => {
  await site?.cp.stop();
  if (receiver) await new Promise<void>((r) => receiver?.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

describe('rollout webhooks across a restart', () => {
  it('deliver every event once, in order, signed, after the control plane restarts with the receiver back', async () => {
    site = await startApiSite(overrides(), dataDir);
    const { registry } = site.cp.services;
    await registerTiny(registry, 'pets', '1.0.0', 1);
    await registerTiny(registry, 'pets', '2.0.0', 2);
    for (const i of [1, 2, 3]) await site.cp.issueDeviceCredentials(`yard-${i}`, { groups: ['yard'] });
    const operator = (await createToken(site, 'release-bot', 'operator')).token;

    // Events while nobody listens: created, stage-started, paused, resumed, aborted.
    const spec = { model: { name: 'pets', version: '2.0.0' }, target: { groups: ['yard'] }, stages: [{ percent: 100, soakSeconds: 3600 }] };
    const { id } = await json<{ id: string }>(await site.call(operator, 'POST', '/api/v1/rollouts', spec), 201);
    for (const action of ['pause', 'resume', 'abort']) await json(await site.call(operator, 'POST', `/api/v1/rollouts/${id}/${action}`, { reason: `test ${action}` }), 200);

    const hooks = site.cp.services.rollouts.webhooks;
    // Every event is in the outbox, and the head was tried (and refused) more than once.
    await expect.poll(() => hooks.stats.retried, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect(hooks.pending()).toBe(5);
    expect(hooks.stats.delivered).toBe(0);
    await site.cp.stop();
    site = null;

    receiver = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await listen(receiver, port);
    site = await startApiSite(overrides(), dataDir);
    const admin = site.cp.adminToken;

    const history = (await json<{ events: { id: number; type: string }[] }>(await site.call(admin, 'GET', `/api/v1/rollouts/${id}`), 200)).events;
    expect(history.map((e) => e.type)).toEqual(['created', 'stage-started', 'paused', 'resumed', 'aborted']);
    await expect.poll(() => received.length, { timeout: 10_000 }).toBe(history.length);
    await expect.poll(() => site?.cp.services.rollouts.webhooks.pending()).toBe(0);
    // A moment more: nothing arrives twice.
    await new Promise((r) => setTimeout(r, 500));
    expect(received.length).toBe(history.length);

    expect(received.map((r) => r.headers[DELIVERY_HEADER])).toEqual(history.map((e) => `${id}:${e.id}`));
    for (const [i, r] of received.entries()) {
      const event = JSON.parse(r.body) as RolloutEventMessage;
      expect(event).toMatchObject({ id: history[i]?.id, rolloutId: id, type: history[i]?.type, model: { name: 'pets', version: '2.0.0' } });
      expect(r.headers[EVENT_HEADER]).toBe(`rollout.${event.type}`);
      const timestamp = r.headers[TIMESTAMP_HEADER] as string;
      expect(r.headers[SIGNATURE_HEADER]).toBe(webhookSignature(SECRET, timestamp, r.body));
    }
    expect(site.cp.services.rollouts.webhooks.stats).toMatchObject({ delivered: 5, givenUp: 0 });
    // And so says /metrics.
    const metrics = await (await site.call(admin, 'GET', '/metrics')).text();
    expect(metrics).toMatch(/^perch_cp_rollout_webhook_deliveries_total\{outcome="delivered"\} 5$/m);
    expect(metrics).toMatch(/^perch_cp_rollout_webhook_deliveries_total\{outcome="given_up"\} 0$/m);
  });
});
