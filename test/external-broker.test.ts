import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger, loadControlPlaneConfig, type ControlPlaneConfig } from '@perch/control-plane';
import { allDevicesFilter, claimantUsername, deviceTopic, encodeJson, type TelemetryWindow } from '@perch/shared';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../packages/agent/src/agent.js';
import { resolveAgentConfig } from '../packages/agent/src/config/agent-config.js';
import { claimCredentials } from '../packages/agent/src/identity/claim-client.js';
import { storedCredentialsPath } from '../packages/agent/src/identity/stored-credentials.js';
import { CapturedLog } from '../packages/agent/src/test-support/harness.js';
import { buildTinyModel } from '../packages/agent/src/test-support/tiny-model.js';
import { SHARED_SUBSCRIPTION_GROUP } from '../packages/control-plane/src/broker/external-broker.js';
import { MosquittoBrokerAccess } from '../packages/control-plane/src/broker/mosquitto-broker-access.js';
import { DynsecClient } from '../packages/control-plane/src/broker/mosquitto-dynsec.js';
import { ControlPlaneBus } from '../packages/control-plane/src/bus/control-plane-bus.js';
import { bearer } from './support/api-auth.js';
import { connectTo, grantedCodes, reasonOf, startMosquitto, whenClosed, type MosquittoServer } from './support/mosquitto-server.js';
import { desireModel, registerModel } from './support/registry-api.js';
import { waitUntil } from './support/wait-until.js';
import { telemetryWindow as windowOf } from '../packages/control-plane/src/test-support/telemetry-windows.js';

/**
 * External broker mode end to end: a real Mosquitto 2 with the config and
 * dynamic security file Perch generates, a control plane with `mqtt.external`
 * (no aedes), and a real in-process agent (synthetic ffmpeg camera,
 * onnxruntime) that claims its credentials through Mosquitto with the
 * site's claim token. The control plane keeps Mosquitto's clients in step
 * with its database, and its persistent session keeps what devices publish
 * while it is down.
 */
const DEVICE = 'ext-agent';

let dir: string;
let mosquitto: MosquittoServer;
let admin: DynsecClient;
let config: ControlPlaneConfig;
let cp: ControlPlane | null = null;
let api: string;
let agent: Agent;
const agentLog = new CapturedLog('info');
const clients: MqttClient[] = [];

function running(): ControlPlane {
  if (!cp) throw new Error('control plane not running');
  return cp;
}

async function startControlPlane(): Promise<ControlPlane> {
  const next = new ControlPlane(config, createLogger('warn'));
  await next.start();
  cp = next;
  api = `http://127.0.0.1:${next.httpPort}/api/v1`;
  return next;
}

async function stopControlPlane(): Promise<void> {
  await cp?.stop();
  cp = null;
}

async function rest(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: bearer(running().adminToken, { 'content-type': 'application/json' }),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function connect(username: string, password: string, clientId: string): Promise<MqttClient> {
  const c = await connectTo(mosquitto, { username, password, clientId, protocolVersion: 5 });
  clients.push(c);
  return c;
}

function storedSeqs(deviceId: string): number[] {
  const rows = running().db.prepare('SELECT seq FROM telemetry_windows WHERE device_id = ? ORDER BY seq').all(deviceId) as { seq: number }[];
  return rows.map((r) => r.seq);
}

/** The seqs of the windows the agent closed (one log line per camera and window). */
function agentSeqs(): number[] {
  return [...new Set(agentLog.lines.filter((l) => typeof l.seq === 'number' && String(l.msg).startsWith('camera cam:')).map((l) => l.seq as number))];
}

function telemetryWindow(deviceId: string, seq: number): TelemetryWindow {
  return windowOf(deviceId, seq, { start: 1_000 * seq, durationMs: 1_000, cameras: [{ id: 'cam', framesReceived: 1, framesInferred: 1, framesDropped: 0, classCounts: { cat: 1 } }] });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-external-'));
  mosquitto = await startMosquitto();
  admin = await DynsecClient.connect(mosquitto.url, { ...mosquitto.admin, clientId: 'test-inspector' });
  config = loadControlPlaneConfig({
    env: {},
    overrides: {
      dataDir: join(dir, 'cp'),
      mqtt: { external: { url: mosquitto.url, passwordFile: mosquitto.files.passwordFile } },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'warn' },
    },
  });
  await startControlPlane();
  const model = buildTinyModel({ gain: 4 });
  await registerModel({ api, adminToken: running().adminToken }, 'gate-model', '1.0.0', model.metadata, model.bytes);

  const rootFile = join(dir, 'root.json');
  writeFileSync(rootFile, await (await fetch(`${api}/trust/root`)).text());
  const claimTokenFile = join(dir, 'claim-token');
  writeFileSync(claimTokenFile, running().claimToken);
  const agentConfig = await resolveAgentConfig(
    {
      deviceId: DEVICE,
      dataDir: join(dir, DEVICE),
      broker: { url: mosquitto.url, claimTokenFile, reconnect: { minMs: 50, maxMs: 500 } },
      trust: { rootFile },
      telemetry: { windowSeconds: 0.3 },
      deployment: { healthWindowSeconds: 0 },
      cameras: [{ id: 'cam', fps: 10, source: { kind: 'synthetic' } }],
      events: { enabled: false },
      http: { enabled: false },
    },
    dir,
  );
  agent = new Agent(agentConfig, agentLog.logger);
  await agent.start();
});

afterAll(async () => {
  await agent?.stop();
  for (const c of clients) await c.endAsync(true);
  await stopControlPlane();
  await admin?.close();
  await mosquitto?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a control plane on an external Mosquitto', () => {
  it('a box claims its credentials through Mosquitto, gets its model and its telemetry is ingested', async () => {
    // `online` comes only from the device's own credentials: a claimant may not publish status.
    await waitUntil(() => running().services.devices.get(DEVICE)?.status === 'online', `${DEVICE} online`, 30_000);
    expect(agent.identity.credentialSource).toBe('claimed');
    expect(await admin.getClient(DEVICE)).toMatchObject({ clientid: DEVICE, roles: [{ rolename: `perch.device.${DEVICE}` }] });
    // The default claim token was given to the broker at start.
    expect(await admin.getClient(claimantUsername(running().claimToken))).not.toBeNull();

    const generation = await desireModel({ api, adminToken: running().adminToken }, DEVICE, 'gate-model', '1.0.0');
    await waitUntil(
      async () => {
        const r = ((await (await fetch(`${api}/devices/${DEVICE}`, { headers: bearer(running().adminToken) })).json()) as { reported: { deployment: { phase: string; generation: number } } | null }).reported;
        return r?.deployment.generation === generation && r.deployment.phase === 'active';
      },
      'the model active on the box',
      30_000,
    );
    await waitUntil(
      () => running().services.telemetry.recent(DEVICE, 3).filter((w) => (w.window.cameras[0]?.framesInferred ?? 0) > 0).length === 3,
      'three windows with inferred frames ingested',
      30_000,
    );

    // The broker keeps a salted hash of the password it was handed, never the password.
    const stored = JSON.parse(readFileSync(storedCredentialsPath(join(dir, DEVICE)), 'utf8')) as { password: string };
    const file = readFileSync(join(mosquitto.dir, 'dynamic-security.json'), 'utf8');
    expect((JSON.parse(file) as { clients: { username: string; password?: string }[] }).clients.find((c) => c.username === DEVICE)?.password).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(file).not.toContain(stored.password);
  });

  it('issues operator credentials and claim tokens to the broker before handing them out, and withdraws them', async () => {
    expect(() => running().services.identity.provision('ext-sync')).toThrow(/issueDeviceCredentials/);
    const issued = await rest('POST', '/devices/ext-op/credentials', {});
    expect(issued.status).toBe(201);
    const op = await connect('ext-op', issued.json.password as string, 'ext-op');
    await op.publishAsync(deviceTopic('ext-op', 'telemetry'), encodeJson(telemetryWindow('ext-op', 1)), { qos: 1 });
    await waitUntil(() => storedSeqs('ext-op').includes(1), 'ext-op window ingested', 10_000);
    // New credentials replace the old at the broker, which ends the session that used them.
    const gone = whenClosed(op);
    const again = await running().issueDeviceCredentials('ext-op');
    await gone;
    expect(reasonOf(await connect('ext-op', issued.json.password as string, 'ext-op').catch((e: unknown) => e))).toBe(0x87);
    await (await connect('ext-op', again.password, 'ext-op')).endAsync();

    const made = await rest('POST', '/claim-tokens', { name: 'batch 7' });
    expect(made.status).toBe(201);
    const token = made.json.token as string;
    const answer = await claimCredentials({ url: mosquitto.url, deviceId: 'ext-claimed', claimToken: token, connectTimeoutMs: 5000, responseTimeoutMs: 10_000 }, agentLog.logger, new AbortController().signal);
    if (answer.status !== 'issued') throw new Error(`refused: ${answer.reason}`);
    await (await connect('ext-claimed', answer.password, 'ext-claimed')).endAsync();
    const claimant = await connect(claimantUsername(token), token, 'ext-next');
    const kicked = whenClosed(claimant);
    expect((await rest('DELETE', `/claim-tokens/${String(made.json.id)}`)).status).toBe(200);
    await kicked;
    expect(await admin.getClient(claimantUsername(token))).toBeNull();
    expect(reasonOf(await connect(claimantUsername(token), token, 'ext-next').catch((e: unknown) => e))).toBe(0x87);
  });

  it('keeps one device off another device\'s topics', async () => {
    const a = await running().issueDeviceCredentials('ext-a');
    const b = await running().issueDeviceCredentials('ext-b');
    await running().services.bus.publish(deviceTopic('ext-b', 'desired'), 'for ext-b', { qos: 1, retain: true });
    const devA = await connect('ext-a', a.password, 'ext-a');
    const got: string[] = [];
    devA.on('message', (topic) => got.push(topic));
    expect(await grantedCodes(devA.subscribeAsync(deviceTopic('ext-b', 'desired'), { qos: 1 }))).toEqual([0x87]);
    expect(await grantedCodes(devA.subscribeAsync('perch/v1/devices/+/desired', { qos: 1 }))).toEqual([0x87]);
    for (const kind of ['telemetry', 'status'] as const) {
      expect(reasonOf(await devA.publishAsync(deviceTopic('ext-b', kind), encodeJson(telemetryWindow('ext-b', 666)), { qos: 1 }).catch((e: unknown) => e)), kind).toBe(0x87);
    }
    // With another device's password, or under another device's client id, A is not let in at all.
    expect(reasonOf(await connect('ext-a', b.password, 'ext-a').catch((e: unknown) => e))).toBe(0x87);
    expect(reasonOf(await connect('ext-a', a.password, 'ext-b').catch((e: unknown) => e))).toBe(0x87);
    // B's own window is a barrier: had A's forgery got through, it would have been ingested first.
    const devB = await connect('ext-b', b.password, 'ext-b');
    await devB.publishAsync(deviceTopic('ext-b', 'telemetry'), encodeJson(telemetryWindow('ext-b', 1)), { qos: 1 });
    await waitUntil(() => storedSeqs('ext-b').includes(1), 'ext-b window ingested', 10_000);
    expect(storedSeqs('ext-b')).toEqual([1]);
    expect(got).toEqual([]);
  });

  it('with `shared`, subscribes through the group $share/perch-cp/ and hears devices on their own topics', async () => {
    const s = await running().issueDeviceCredentials('ext-s');
    const bus = new ControlPlaneBus({ url: mosquitto.url, ...mosquitto.admin, clientId: 'test-shared-bus', sharedGroup: SHARED_SUBSCRIPTION_GROUP }, createLogger('silent'));
    const heard: string[] = [];
    bus.onMessage((topic) => heard.push(topic));
    try {
      await bus.start([allDevicesFilter('telemetry')]);
      const dev = await connect('ext-s', s.password, 'ext-s');
      // The group's subscription is made just after the connect: publish until it is in place.
      let seq = 0;
      await waitUntil(async () => {
        await dev.publishAsync(deviceTopic('ext-s', 'telemetry'), encodeJson(telemetryWindow('ext-s', ++seq)), { qos: 1 });
        return heard.includes(deviceTopic('ext-s', 'telemetry'));
      }, 'a window heard through the shared group', 10_000);
      // The topic as published, without the group's prefix: what the dispatcher parses (the box's windows come too).
      expect(heard.every((t) => /^perch\/v1\/devices\/[^/]+\/telemetry$/.test(t))).toBe(true);
    } finally {
      await bus.stop();
    }
  });

  it('ingests every window the box published while the control plane was down, once', async () => {
    const lastBefore = Math.max(...storedSeqs(DEVICE));
    await stopControlPlane();
    // The broker acknowledges these for the control plane's persistent session: the box forgets them.
    await waitUntil(() => agentSeqs().filter((s) => s > lastBefore).length >= 5 && agent.outbox.stats.pending === 0, 'five windows taken by the broker', 30_000);
    const whileAway = agentSeqs().filter((s) => s > lastBefore);
    await startControlPlane();
    await waitUntil(() => whileAway.every((s) => storedSeqs(DEVICE).includes(s)), 'the windows published meanwhile ingested', 30_000);
    const seqs = storedSeqs(DEVICE);
    const first = seqs[0] ?? 0;
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => first + i));
    expect(running().db.prepare('SELECT COUNT(*) AS n FROM telemetry_gaps WHERE device_id = ?').get(DEVICE)).toEqual({ n: 0 });
    // Each window counted once in the rollups, however often it was delivered (rollups are written behind the windows: now).
    // The box keeps publishing, and a 5 s write of the state may be under way: what the rollups count must settle on the
    // windows the written state covers (up to its watermark), read in one statement.
    const counts = running().db.prepare(
      `SELECT (SELECT SUM(windows) FROM telemetry_rollups_minute WHERE device_id = @device) AS rolled,
              (SELECT COUNT(*) FROM telemetry_windows WHERE device_id = @device AND rowid <= (SELECT through_rowid FROM telemetry_state_watermark)) AS covered`,
    );
    await waitUntil(async () => {
      await running().services.ingest.flush();
      const c = counts.get({ device: DEVICE }) as { rolled: number; covered: number };
      return c.covered >= seqs.length && c.rolled === c.covered;
    }, 'the rollups to count every window they cover, once', 10_000);
  });

  it('removes at start what the database no longer lets in: devices and claim tokens the broker was not told of', async () => {
    await stopControlPlane();
    const access = new MosquittoBrokerAccess(admin);
    await access.addDevice('ext-ghost', 'password-of-a-device-nobody-issued');
    await access.addClaimToken('a-claim-token-this-site-never-made');
    await startControlPlane();
    expect(await admin.getClient('ext-ghost')).toBeNull();
    expect(await admin.getClient(claimantUsername('a-claim-token-this-site-never-made'))).toBeNull();
    // What it does let in stays.
    for (const username of [DEVICE, 'ext-a', 'ext-b', claimantUsername(running().claimToken)]) expect(await admin.getClient(username), username).not.toBeNull();
  });

  it('revoking the box ends its session on the broker and keeps it out', async () => {
    await waitUntil(() => running().services.devices.get(DEVICE)?.status === 'online', `${DEVICE} online`, 20_000);
    const stored = JSON.parse(readFileSync(storedCredentialsPath(join(dir, DEVICE)), 'utf8')) as { password: string };
    expect((await rest('POST', `/devices/${DEVICE}/revoke`, { reason: 'stolen' })).status).toBe(200);
    expect(await admin.getClient(DEVICE)).toBeNull();
    await waitUntil(() => agent.identity.problem?.includes('refused'), 'the box to report its refused credentials', 20_000);
    expect(reasonOf(await connect(DEVICE, stored.password, DEVICE).catch((e: unknown) => e))).toBe(0x87);
    const reclaim = await claimCredentials({ url: mosquitto.url, deviceId: DEVICE, claimToken: running().claimToken, connectTimeoutMs: 5000, responseTimeoutMs: 10_000 }, agentLog.logger, new AbortController().signal);
    expect(reclaim).toMatchObject({ status: 'refused', code: 'device-revoked' });
  });
});
