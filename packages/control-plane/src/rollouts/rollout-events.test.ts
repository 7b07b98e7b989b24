import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ALL_ROLLOUT_EVENTS_FILTER, rolloutEventsTopic } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, connectDevice, startTestBroker, until, type TestBroker } from '../broker/test-support/broker-harness.js';
import { tempDatabase } from '../test-support/telemetry-windows.js';
import { parseRolloutSpec } from './rollout-spec.js';
import { RolloutEvents, type RolloutEventMessage } from './rollout-events.js';
import { RolloutStore } from './rollout-store.js';
import { DELIVERY_HEADER, EVENT_HEADER, retryDelayMs, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDelivery, webhookSignature, type WebhookOptions, type WebhookTarget } from './webhook-delivery.js';
import { WebhookOutbox } from './webhook-outbox.js';

/**
 * Rollout events leave the control plane two ways: QoS 1 on
 * `perch/v1/rollouts/{id}/events` of a real broker (which no device may
 * read or write), and signed POSTs to webhooks that are retried until the
 * receiver takes them, in order, without holding up whoever recorded them,
 * through an outbox in SQLite; what cannot be delivered is given up, counted
 * and logged. (A restart in between: webhook-restart.test.ts.)
 */
const SECRET = 'a-webhook-secret-of-some-length';
const silent = pino({ level: 'silent' });

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

let broker: TestBroker;
let cp: MqttClient;
let watcher: MqttClient;
let device: MqttClient;
let server: Server;
let hookUrl: string;
const received: Received[] = [];
/** answers 503 to this many requests first, as a receiver in trouble */
let failFirst = 0;
const db = tempDatabase('perch-rollout-events-');

beforeAll(async () => {
  broker = await startTestBroker();
  cp = await connectControlPlane(broker);
  watcher = await connectControlPlane(broker);
  device = await connectDevice(broker.url, 'box-1');
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (failFirst > 0) {
        failFirst--;
        res.writeHead(503).end();
        return;
      }
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/perch`;
  // A rollout row for the events to belong to.
  db.db.prepare("INSERT INTO model_versions (id, name, version, sha256, length, metadata_json, target_json, created_at) VALUES (1, 'pets', '2.0.0', ?, 1, '{}', '{}', 0)").run('a'.repeat(64));
  new RolloutStore(db.db).insert({
    id: 'ro-1',
    name: null,
    spec: parseRolloutSpec({ model: { name: 'pets', version: '2.0.0' }, stages: [{ percent: 100, soakSeconds: 0 }] }),
    modelVersionId: 1,
    state: 'running',
    stageIndex: 0,
    phase: 'replace',
    phaseStartedAt: 0,
    reason: null,
    createdBy: null,
    createdAt: 0,
  });
});

afterAll(async () => {
  await Promise.all([cp, watcher, device].map((c) => c?.endAsync(true)));
  await broker?.stop();
  await new Promise<void>((r) => server.close(() => r()));
  db.close();
});

const outbox = new WebhookOutbox(db.db);
/** The hook's URL on a port nobody listens on: every POST is refused. */
const deadUrl = () => hookUrl.replace(/:\d+\//, ':1/');

/** Delivery through the test database's outbox, emptied first; its log lines kept in `logged`. */
function delivery(targets: WebhookTarget[], opts: Partial<WebhookOptions>, logged: Record<string, unknown>[] = []): WebhookDelivery {
  db.db.exec('DELETE FROM rollout_webhook_outbox');
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  return new WebhookDelivery(outbox, targets, pino({ level: 'warn' }, sink), opts);
}

function events(webhooks: WebhookDelivery): RolloutEvents {
  const publish = (topic: string, payload: string) => cp.publishAsync(topic, payload, { qos: 1 }).then(() => undefined);
  return new RolloutEvents(new RolloutStore(db.db), publish, webhooks, silent);
}

describe('rollout events', () => {
  it('go out on the rollout events topic, which devices can neither read nor write', async () => {
    const heard: RolloutEventMessage[] = [];
    watcher.on('message', (topic, payload) => {
      if (topic === rolloutEventsTopic('ro-1')) heard.push(JSON.parse(payload.toString('utf8')) as RolloutEventMessage);
    });
    await watcher.subscribeAsync(ALL_ROLLOUT_EVENTS_FILTER, { qos: 1 });
    // The broker answers a refused subscription with 128 (mqtt.js rejects it), and drops a refused publish.
    await expect(device.subscribeAsync(ALL_ROLLOUT_EVENTS_FILTER, { qos: 1 })).rejects.toThrow(/Subscribe error/);
    await expect(device.subscribeAsync(rolloutEventsTopic('ro-1'), { qos: 1 })).rejects.toThrow(/Subscribe error/);
    const deviceHeard: string[] = [];
    device.on('message', (topic) => deviceHeard.push(topic));
    await device.publishAsync(rolloutEventsTopic('ro-1'), JSON.stringify({ forged: true }), { qos: 0 });

    const e = events(delivery([], {}));
    const at = Date.parse('2025-01-01T00:00:00Z');
    e.record({ rolloutId: 'ro-1', at, type: 'paused', state: 'paused', stageIndex: 0, phase: 'replace', reason: 'gate failed', actor: null }, { name: 'pets', version: '2.0.0' });
    e.record({ rolloutId: 'ro-1', at, type: 'resumed', state: 'running', stageIndex: 0, phase: 'replace', reason: null, actor: 'ops (tok_1)' }, { name: 'pets', version: '2.0.0' });
    await until('both events on the topic', () => heard.length >= 2);
    expect(heard.map((m) => [m.type, m.state, m.reason])).toEqual([
      ['paused', 'paused', 'gate failed'],
      ['resumed', 'running', null],
    ]);
    expect(heard[0]).toMatchObject({ rolloutId: 'ro-1', stage: 0, phase: 'replace', model: { name: 'pets', version: '2.0.0' }, at: '2025-01-01T00:00:00.000Z' });
    // Nothing forged by the device arrived, and the history has both events.
    expect(heard.some((m) => 'forged' in m)).toBe(false);
    expect(deviceHeard).toEqual([]);
    expect(new RolloutStore(db.db).events('ro-1').map((x) => x.type)).toEqual(['paused', 'resumed']);
  });

  it('are POSTed to webhooks signed, in order, retried past a failing receiver, without waiting', async () => {
    received.length = 0;
    failFirst = 2;
    const hooks = delivery([{ url: hookUrl, secret: SECRET }], { baseDelayMs: 20, maxDelayMs: 100 });
    hooks.start();
    const e = events(hooks);
    for (const type of ['stage-passed', 'stage-started', 'completed']) {
      e.record({ rolloutId: 'ro-1', at: Date.now(), type, state: type === 'completed' ? 'completed' : 'running', stageIndex: 1, phase: 'replace', reason: null, actor: null }, { name: 'pets', version: '2.0.0' });
    }
    // Recording returned before any delivery was made: nothing has arrived yet, all three wait in the outbox.
    expect(received.length).toBe(0);
    expect(outbox.all().map((o) => o.eventType)).toEqual(['rollout.stage-passed', 'rollout.stage-started', 'rollout.completed']);
    await until('three deliveries', () => received.length >= 3);
    expect(hooks.stats.retried).toBeGreaterThanOrEqual(2);
    expect(hooks.stats.delivered).toBe(3);
    // Each is deleted once the receiver said 2xx.
    await until('the outbox emptied', () => hooks.pending() === 0);
    const types = received.map((r) => (JSON.parse(r.body) as RolloutEventMessage).type);
    expect(types).toEqual(['stage-passed', 'stage-started', 'completed']);
    for (const r of received) {
      const ts = r.headers[TIMESTAMP_HEADER] as string;
      expect(r.headers[SIGNATURE_HEADER]).toBe(webhookSignature(SECRET, ts, r.body));
      expect(r.headers[EVENT_HEADER]).toMatch(/^rollout\./);
      expect(r.headers[DELIVERY_HEADER]).toMatch(/^ro-1:\d+$/);
    }
    // A tampered body does not match its signature.
    const first = received[0]!;
    expect(webhookSignature(SECRET, first.headers[TIMESTAMP_HEADER] as string, first.body.replace('stage-passed', 'completed'))).not.toBe(first.headers[SIGNATURE_HEADER]);
    await hooks.stop();
  });

  it('give up on a receiver that never answers 2xx after the attempts allowed, counting and logging it, then send the next', async () => {
    const logged: Record<string, unknown>[] = [];
    received.length = 0;
    const hooks = delivery([{ url: deadUrl(), secret: null }, { url: hookUrl, secret: null }], { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 }, logged);
    hooks.start();
    hooks.enqueue('x:1', 'rollout.paused', { hello: 1 });
    hooks.enqueue('x:2', 'rollout.resumed', { hello: 2 });
    await until('both deliveries given up at the dead receiver', () => hooks.stats.givenUp === 2);
    // Three tries each, the first and two retries; the live receiver got both, once each.
    expect(hooks.stats.retried).toBe(4);
    expect(hooks.stats.delivered).toBe(2);
    expect(received.map((r) => r.headers[DELIVERY_HEADER])).toEqual(['x:1', 'x:2']);
    const gaveUp = logged.filter((l) => l['msg'] === 'webhook delivery given up');
    expect(gaveUp.map((l) => [l['delivery'], l['attempts'], l['url']])).toEqual([
      ['x:1', 3, deadUrl()],
      ['x:2', 3, deadUrl()],
    ]);
    expect(gaveUp[1]).toMatchObject({ givenUp: 2, why: '3 tries failed', lastError: expect.any(String) });
    expect(hooks.pending()).toBe(0);
    await hooks.stop();
  });

  it('give up deliveries older than the age allowed, however few their tries', async () => {
    const logged: Record<string, unknown>[] = [];
    const hooks = delivery([{ url: deadUrl(), secret: null }], { maxAttempts: 1000, maxAgeMs: 150, baseDelayMs: 5, maxDelayMs: 20 }, logged);
    hooks.start();
    hooks.enqueue('old:1', 'rollout.paused', {});
    await until('the delivery given up for its age', () => hooks.stats.givenUp === 1);
    expect(hooks.stats.retried).toBeGreaterThan(1);
    expect(logged.find((l) => l['msg'] === 'webhook delivery given up')).toMatchObject({ delivery: 'old:1', why: 'older than 0.15 s' });
    expect(hooks.pending()).toBe(0);
    await hooks.stop();
  });

  it('bound the outbox per webhook, and give up what a webhook no longer configured left behind', async () => {
    // Not started: everything waits, and the oldest beyond maxPending are pushed out.
    const full = delivery([{ url: deadUrl(), secret: null }], { maxPending: 2 });
    for (const i of [1, 2, 3, 4]) full.enqueue(`q:${i}`, 'rollout.paused', { i });
    expect(full.stats.givenUp).toBe(2);
    expect(outbox.all().map((o) => o.deliveryId)).toEqual(['q:3', 'q:4']);
    await full.stop();
    // The webhook left the config: a delivery made with another list gives its rows up at start.
    const other = new WebhookDelivery(outbox, [{ url: hookUrl, secret: null }], silent, {});
    other.start();
    expect(other.stats.givenUp).toBe(2);
    expect(outbox.all()).toEqual([]);
    await other.stop();
  });

  it('wait a jittered, doubling, capped delay between tries', () => {
    const opts = { baseDelayMs: 1000, maxDelayMs: 60_000 };
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, opts, () => 1))).toEqual([1000, 2000, 4000, 8000]);
    expect(retryDelayMs(20, opts, () => 1)).toBe(60_000);
    expect(retryDelayMs(3, opts, () => 0.5)).toBe(2000);
    expect(retryDelayMs(3, opts, () => 0)).toBe(0);
  });
});
