import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import {
  claimantUsername,
  deviceTopic,
  encodeJson,
  openSecret,
  provisionResponseSchema,
  provisionSealingContext,
  sealingKeyPair,
  type ProvisionResponse,
  type TelemetryWindow,
} from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../packages/agent/src/agent.js';
import { resolveAgentConfig } from '../packages/agent/src/config/agent-config.js';
import { claimCredentials, type ClaimAnswer } from '../packages/agent/src/identity/claim-client.js';
import { CapturedLog } from '../packages/agent/src/test-support/harness.js';
import { startTestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';
import { telemetryWindow as windowOf } from '../packages/control-plane/src/test-support/telemetry-windows.js';

/**
 * Device identity against a real control plane: its embedded aedes broker on
 * loopback, SQLite in a temp dir, in-process agents, mqtt.js clients, and
 * Debian's mosquitto_pub / mosquitto_sub as the attacker's tools.
 */
let dir: string;
let cp: ControlPlane;
let api: string;
let rootFile: string;
let url: string;
const agents: Agent[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-identity-'));
  const site = await startTestControlPlane(dir);
  ({ cp, api, rootFile } = site);
  url = `mqtt://127.0.0.1:${cp.mqttPort}`;
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const c of clients) await c.endAsync(true);
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function rest(method: string, path: string, body?: unknown, opts: { auth?: boolean } = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.auth !== false) headers.authorization = `Bearer ${cp.adminToken}`;
  const res = await fetch(`${api}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function connect(clientId: string, password: string, username = clientId): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId, username, password, reconnectPeriod: 0, connectTimeout: 5000 }, false);
  clients.push(client);
  return client;
}

/** The CONNACK refusal a login gets. */
async function refusal(clientId: string, password: string, username = clientId): Promise<string> {
  const err = await connect(clientId, password, username).then(
    () => null,
    (e: unknown) => e as Error,
  );
  if (!err) throw new Error(`${clientId} was let in`);
  return err.message;
}

/** The SUBACK codes for `topics`, in order: 0-2 granted, 128 refused (mqtt.js rejects when any is refused). */
async function grants(client: MqttClient, topics: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(Object.fromEntries(topics.map((t) => [t, { qos: 1 as const }])))).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return granted;
  }
}

const closed = (c: MqttClient) => new Promise<void>((resolve) => (c.disconnected ? resolve() : c.once('close', () => resolve())));

function telemetryWindow(deviceId: string, seq: number): TelemetryWindow {
  return windowOf(deviceId, seq, { start: 1_000 * seq, durationMs: 1_000, cameras: [{ id: 'front', framesReceived: 1, framesInferred: 1, framesDropped: 0, classCounts: { cat: 1 } }] });
}

const storedSeqs = (deviceId: string) => cp.services.telemetry.recent(deviceId, 100).map((w) => w.seq).sort((a, b) => a - b);

/** A device's own valid window, ingested: after it, anything forged earlier would have been too. */
async function sentinel(deviceId: string, password: string, seq: number): Promise<void> {
  const dev = await connect(deviceId, password);
  await dev.publishAsync(deviceTopic(deviceId, 'telemetry'), encodeJson(telemetryWindow(deviceId, seq)), { qos: 1 });
  await waitUntil(() => storedSeqs(deviceId).includes(seq), `${deviceId} window ${seq} ingested`, 10_000);
  await dev.endAsync();
}

/** mosquitto_pub / mosquitto_sub as a child process; the kill is a hang guard only. */
function mosquitto(tool: 'mosquitto_pub' | 'mosquitto_sub', args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(`/usr/bin/${tool}`, ['-h', '127.0.0.1', '-p', String(cp.mqttPort), ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

async function startAgent(deviceId: string, broker: Record<string, unknown>, dataDir = join(dir, deviceId)): Promise<{ agent: Agent; log: CapturedLog }> {
  const config = await resolveAgentConfig(
    {
      deviceId,
      dataDir,
      broker: { url, reconnect: { minMs: 50, maxMs: 300 }, ...broker },
      trust: { rootFile },
      cameras: [],
      events: { enabled: false },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'info' },
    },
    dir,
  );
  const log = new CapturedLog('info');
  const agent = new Agent(config, log.logger);
  agents.push(agent);
  await agent.start();
  return { agent, log };
}

async function healthz(agent: Agent): Promise<{ controlPlane?: { connected: boolean; problem: string | null } }> {
  const port = agent.endpoints?.address?.port;
  if (port === undefined) throw new Error('no local endpoints');
  return (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { controlPlane?: { connected: boolean; problem: string | null } };
}

const tokenUses = (id: string) => cp.services.identity.claimTokens().find((t) => t.id === id)?.uses;

async function claim(deviceId: string, claimToken: string): Promise<ClaimAnswer> {
  const log = new CapturedLog();
  return claimCredentials({ url, deviceId, claimToken, connectTimeoutMs: 5000, responseTimeoutMs: 10_000 }, log.logger, new AbortController().signal);
}

describe('fleet provisioning with claim tokens', () => {
  it('a box with only a claim token claims its own credentials, stores them and comes online with them; a restart uses them', async () => {
    const before = tokenUses('default') ?? 0;
    const dataDir = join(dir, 'claim-box-1');
    const first = await startAgent('claim-box-1', { claimToken: cp.claimToken }, dataDir);
    // `online` can only come from the device's own credentials: a claimant may not publish status.
    await waitUntil(() => cp.services.devices.get('claim-box-1')?.status === 'online', 'claim-box-1 online', 20_000);
    expect(first.agent.identity.credentialSource).toBe('claimed');

    const file = join(dataDir, 'secrets', 'mqtt-credentials');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'secrets')).mode & 0o777).toBe(0o700);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { username: string; password: string };
    expect(stored.username).toBe('claim-box-1');
    const row = cp.db.prepare('SELECT secret_sha256, claim_token_id, used_at FROM device_credentials WHERE device_id = ?').get('claim-box-1') as Record<string, unknown>;
    expect(row).toMatchObject({ secret_sha256: createHash('sha256').update(stored.password).digest('hex'), claim_token_id: 'default' });
    expect(row.used_at).not.toBeNull();
    expect(tokenUses('default')).toBe(before + 1);
    expect(first.log.messages()).toContain('claimed this device its own MQTT credentials');

    await first.agent.stop();
    await waitUntil(() => cp.services.devices.get('claim-box-1')?.status === 'offline', 'claim-box-1 offline', 10_000);
    const second = await startAgent('claim-box-1', { claimToken: cp.claimToken }, dataDir);
    await waitUntil(() => cp.services.devices.get('claim-box-1')?.status === 'online', 'claim-box-1 online again', 20_000);
    expect(second.agent.identity.credentialSource).toBe('stored');
    expect(tokenUses('default')).toBe(before + 1);
    expect(second.log.messages()).not.toContain('claimed this device its own MQTT credentials');
    await second.agent.stop();
  });

  it('a box whose stored credentials are damaged says so and does not claim over them', async () => {
    const dataDir = join(dir, 'damaged-box');
    mkdirSync(join(dataDir, 'secrets'), { recursive: true });
    writeFileSync(join(dataDir, 'secrets', 'mqtt-credentials'), '{"username": "damaged-box", ');
    const uses = tokenUses('default');
    const { agent, log } = await startAgent('damaged-box', { claimToken: cp.claimToken }, dataDir);
    expect(agent.identity.problem).toMatch(/^stored credentials unusable: .*malformed JSON/);
    expect((await healthz(agent)).controlPlane).toMatchObject({ connected: false, problem: expect.stringMatching(/stored credentials unusable/) });
    expect(log.messages()).not.toContain('no MQTT credentials yet: claiming them with the claim token');
    expect(tokenUses('default')).toBe(uses);
    await agent.stop();
  });

  it('refuses an unknown, used-up, revoked or expired token, with the reason', async () => {
    // Unknown: not even a claimant.
    await expect(claim('ct-box-0', 'not-a-token-this-site-knows')).rejects.toThrow(/Bad username or password/);

    const made = await rest('POST', '/claim-tokens', { name: 'one box', maxUses: 1, tags: ['outdoor'], groups: ['site-a'] });
    expect(made.status).toBe(201);
    const once = made.json as { id: string; token: string; uses: number };
    expect(once.uses).toBe(0);
    const listed = await rest('GET', '/claim-tokens');
    const entry = (listed.json.claimTokens as Record<string, unknown>[]).find((t) => t.id === once.id);
    expect(entry).toMatchObject({ name: 'one box', maxUses: 1, uses: 0, tags: ['outdoor'], groups: ['site-a'], revokedAt: null });
    expect(JSON.stringify(listed.json)).not.toContain(once.token);

    const issued = await claim('ct-box-1', once.token);
    expect(issued).toMatchObject({ status: 'issued', username: 'ct-box-1' });
    expect(cp.services.identity.labels('ct-box-1')).toEqual({ tags: ['outdoor'], groups: ['site-a'] });
    const usedUp = await claim('ct-box-2', once.token);
    expect(usedUp).toMatchObject({ status: 'refused', code: 'claim-token-used-up' });
    expect(usedUp.status === 'refused' && usedUp.reason).toMatch(/one box/);

    const batch = (await rest('POST', '/claim-tokens', { name: 'recalled batch' })).json as { id: string; token: string };
    expect((await rest('DELETE', `/claim-tokens/${batch.id}`)).json).toMatchObject({ id: batch.id, revokedAt: expect.stringMatching(/^\d{4}-/) });
    expect(await claim('ct-box-3', batch.token)).toMatchObject({ status: 'refused', code: 'claim-token-revoked' });

    const later = (await rest('POST', '/claim-tokens', { name: 'for today', expiresAt: new Date(Date.now() + 3_600_000).toISOString() })).json as { id: string; token: string };
    expect(await claim('ct-box-4', later.token)).toMatchObject({ status: 'issued' });
    // The day is over.
    cp.db.prepare('UPDATE claim_tokens SET expires_at = ? WHERE id = ?').run(Date.now() - 1, later.id);
    const expired = await claim('ct-box-5', later.token);
    expect(expired).toMatchObject({ status: 'refused', code: 'claim-token-expired' });
    for (const id of ['ct-box-2', 'ct-box-3', 'ct-box-5']) expect(cp.services.devices.get(id)).toBeNull();

    // An agent with a used-up token says why it cannot log in, in its log and on /healthz.
    const { agent, log } = await startAgent('ct-box-6', { claimToken: once.token });
    await waitUntil(() => log.find((l) => l.msg === 'the control plane refused the claim'), 'the refusal in the agent log', 20_000);
    expect(agent.identity.problem).toMatch(/claim refused \(claim-token-used-up\)/);
    const health = await healthz(agent);
    expect(health.controlPlane).toMatchObject({ connected: false, problem: expect.stringMatching(/claim-token-used-up/) });
    await agent.stop();
    const stranger = await startAgent('ct-box-7', { claimToken: 'not-a-token-this-site-knows' });
    await waitUntil(() => stranger.agent.identity.problem?.startsWith('claim token refused by the broker'), 'the unknown token reported', 20_000);
    expect(stranger.log.find((l) => l.level === 50 && String(l.msg).startsWith('the broker refused the claim token'))).toBeDefined();
    await stranger.agent.stop();
  });

  it('a claimant may use only its own provision topics, and may not take over a connected device', async () => {
    const claimant = await connect('cl-1', cp.claimToken);
    const topics = [
      deviceTopic('cl-1', 'provision/response'),
      deviceTopic('cl-1', 'desired'),
      deviceTopic('cl-1', 'artifact/chunk'),
      deviceTopic('cl-2', 'provision/response'),
      'perch/v1/devices/+/provision/response',
    ];
    expect(await grants(claimant, topics)).toEqual([1, 128, 128, 128, 128]);
    // Publishing anything but its own request ends the connection, and nothing is ingested.
    const gone = closed(claimant);
    claimant.publish(deviceTopic('cl-1', 'telemetry'), encodeJson(telemetryWindow('cl-1', 1)), { qos: 1 });
    await gone;
    const other = await connect('cl-1', cp.claimToken);
    const goneToo = closed(other);
    other.publish(deviceTopic('cl-2', 'provision/request'), encodeJson({ requestId: 'r', deviceId: 'cl-2', claimToken: cp.claimToken }), { qos: 1 });
    await goneToo;
    expect(cp.services.devices.get('cl-1')).toBeNull();
    expect(cp.services.devices.get('cl-2')).toBeNull();

    // A device that has credentials does not need provision topics either.
    const livePassword = (await cp.issueDeviceCredentials('live-1')).password;
    const live = await connect('live-1', livePassword);
    expect(await grants(live, [deviceTopic('live-1', 'provision/response'), deviceTopic('live-1', 'desired')])).toEqual([128, 1]);
    // Anyone holding a claim token connecting as a live device id would cut it off: refused.
    let cutOff = false;
    live.once('close', () => (cutOff = true));
    expect(await refusal('live-1', cp.claimToken)).toMatch(/Not authorized/);
    // The same under the claimant username agents claim with; that username must name the token, and a device's own secret is no claim token.
    expect(await refusal('live-1', cp.claimToken, claimantUsername(cp.claimToken))).toMatch(/Not authorized/);
    expect(await refusal('cl-9', cp.claimToken, claimantUsername('another-claim-token-0123456789'))).toMatch(/Bad username or password/);
    expect(await refusal('live-1', livePassword, claimantUsername(livePassword))).toMatch(/Bad username or password/);
    await live.publishAsync(deviceTopic('live-1', 'telemetry'), encodeJson(telemetryWindow('live-1', 1)), { qos: 1 });
    expect(cutOff).toBe(false);
    await waitUntil(() => storedSeqs('live-1').includes(1), 'live-1 still publishing', 10_000);
  });

  it('drops malformed provision requests and answers the next good one', async () => {
    const claimant = await connect('bad-1', cp.claimToken);
    const { publicKey, privateKey } = sealingKeyPair();
    const answers: ProvisionResponse[] = [];
    claimant.on('message', (_t, payload) => answers.push(provisionResponseSchema.parse(JSON.parse(payload.toString('utf8')))));
    await claimant.subscribeAsync(deviceTopic('bad-1', 'provision/response'), { qos: 1 });
    const topic = deviceTopic('bad-1', 'provision/request');
    const dropped = cp.stats.dispatch.dropped;
    await claimant.publishAsync(topic, '{"requestId": "a", ', { qos: 1 });
    await claimant.publishAsync(topic, encodeJson({ requestId: 'b', deviceId: 'bad-1' }), { qos: 1 });
    await claimant.publishAsync(topic, encodeJson({ requestId: 'c', deviceId: 'bad-1', claimToken: 'short', publicKey }), { qos: 1 });
    await claimant.publishAsync(topic, encodeJson({ requestId: 'd', deviceId: 'someone-else', claimToken: cp.claimToken, publicKey }), { qos: 1 });
    await claimant.publishAsync(topic, encodeJson({ requestId: 'e', deviceId: 'bad-1', claimToken: cp.claimToken, publicKey: 'no key' }), { qos: 1 });
    await waitUntil(() => cp.stats.dispatch.dropped >= dropped + 5, 'five requests dropped', 10_000);
    // A well-formed key nothing can be sealed to (the all-zero X25519 point): refused before anything is issued or counted.
    await claimant.publishAsync(topic, encodeJson({ requestId: 'g', deviceId: 'bad-1', claimToken: cp.claimToken, publicKey: 'A'.repeat(43) }), { qos: 1 });
    const unusable = await waitUntil(() => answers.find((a) => a.requestId === 'g'), 'the unusable key answered', 10_000);
    expect(unusable).toMatchObject({ status: 'refused', code: 'public-key-unusable' });
    const issued = (() => {
      try {
        return cp.services.identity.identity('bad-1').credentials;
      } catch {
        return null; // not even known as a device
      }
    })();
    expect(issued).toBeNull();
    await claimant.publishAsync(topic, encodeJson({ requestId: 'f', deviceId: 'bad-1', claimToken: cp.claimToken, publicKey }), { qos: 1 });
    const answer = await waitUntil(() => answers.find((a) => a.requestId === 'f'), 'the good request answered', 10_000);
    expect(answers.map((a) => a.requestId)).toEqual(['g', 'f']);
    if (answer.status !== 'issued') throw new Error(`refused: ${answer.reason}`);
    // The password is sealed to the request's key: it opens with that key only, and then logs in.
    expect(() => openSecret(answer.password, sealingKeyPair().privateKey, provisionSealingContext('bad-1', 'f'))).toThrow();
    const password = openSecret(answer.password, privateKey, provisionSealingContext('bad-1', 'f'));
    await claimant.endAsync();
    await (await connect('bad-1', password)).endAsync();
  });
});

describe('per-device credentials and revocation', () => {
  it('refuses a wrong password, another device\'s password, and a username that is not the client id', async () => {
    const a = (await cp.issueDeviceCredentials('pw-a')).password;
    const b = (await cp.issueDeviceCredentials('pw-b')).password;
    expect(await refusal('pw-a', `${a.slice(0, -1)}x`)).toMatch(/Bad username or password/);
    expect(await refusal('pw-a', b)).toMatch(/Bad username or password/);
    expect(await refusal('pw-a', b, 'pw-b')).toMatch(/Bad username or password/);
    const tool = await mosquitto('mosquitto_pub', ['-i', 'pw-a', '-u', 'pw-a', '-P', b, '-t', deviceTopic('pw-a', 'telemetry'), '-q', '1', '-m', '{}']);
    expect(tool.stderr).toMatch(/bad user name or password/i);
    expect(tool.code).not.toBe(0);
    await (await connect('pw-a', a)).endAsync();
  });

  it('a revoked device is cut off at once and kept out; a claimed agent reports it and does not claim again', async () => {
    const { agent, log } = await startAgent('rv-box', { claimToken: cp.claimToken });
    await waitUntil(() => cp.services.devices.get('rv-box')?.status === 'online', 'rv-box online', 20_000);
    const stored = JSON.parse(readFileSync(join(dir, 'rv-box', 'secrets', 'mqtt-credentials'), 'utf8')) as { password: string };
    const uses = tokenUses('default');

    const revoked = await rest('POST', '/devices/rv-box/revoke', { reason: 'stolen from the gate' });
    expect(revoked).toMatchObject({ status: 200, json: { deviceId: 'rv-box', reason: 'stolen from the gate', disconnected: true } });
    // Its will says it is gone.
    await waitUntil(() => cp.services.devices.get('rv-box')?.status === 'offline', 'rv-box offline', 10_000);
    // Every reconnect is refused; the agent says so and stays away from its claim token.
    await waitUntil(() => agent.identity.problem?.includes('refused'), 'the agent to report the refusal', 20_000);
    await waitUntil(() => log.lines.filter((l) => l.msg === 'mqtt connection error').length >= 3, 'three refused reconnects', 20_000);
    expect(log.find((l) => typeof l.msg === 'string' && l.msg.includes('Not claiming again'))).toBeDefined();
    expect(log.messages().filter((m) => m === 'claimed this device its own MQTT credentials')).toHaveLength(1);
    expect(log.messages().filter((m) => m === 'no MQTT credentials yet: claiming them with the claim token')).toHaveLength(1);
    expect(tokenUses('default')).toBe(uses);
    expect((await healthz(agent)).controlPlane).toMatchObject({ connected: false, problem: expect.stringMatching(/refused this device's claimed credentials/) });
    await agent.stop();

    expect(await refusal('rv-box', stored.password)).toMatch(/Bad username or password/);
    const reclaim = await claim('rv-box', cp.claimToken);
    expect(reclaim).toMatchObject({ status: 'refused', code: 'device-revoked' });
    expect(reclaim.status === 'refused' && reclaim.reason).toMatch(/stolen from the gate/);
    expect((await rest('GET', '/devices/rv-box/identity')).json).toMatchObject({ revoked: { reason: 'stolen from the gate' }, credentials: null });

    // A plain client too: its session ends when the revocation returns.
    const client = await connect('rv-2', (await cp.issueDeviceCredentials('rv-2')).password);
    const gone = closed(client);
    expect((await rest('POST', '/devices/rv-2/revoke', {})).json).toMatchObject({ disconnected: true, reason: null });
    await gone;
  });
});

describe('one device cannot reach another device\'s topics', () => {
  let a: string;
  let b: string;
  beforeAll(async () => {
    a = (await cp.issueDeviceCredentials('acl-a')).password;
    b = (await cp.issueDeviceCredentials('acl-b')).password;
    // Each has a retained desired state waiting: a subscription that got through would deliver it at once.
    await cp.services.bus.publish(deviceTopic('acl-a', 'desired'), 'for acl-a', { qos: 1, retain: true });
    await cp.services.bus.publish(deviceTopic('acl-b', 'desired'), 'for acl-b', { qos: 1, retain: true });
  });

  it('mqtt.js: subscribing to B\'s desired state is refused, publishing B\'s telemetry ends the connection and is not ingested', async () => {
    const dev = await connect('acl-a', a);
    const got: string[] = [];
    dev.on('message', (topic) => got.push(topic));
    expect(await grants(dev, [deviceTopic('acl-b', 'desired'), deviceTopic('acl-a', 'desired')])).toEqual([128, 1]);
    await waitUntil(() => got.includes(deviceTopic('acl-a', 'desired')), 'its own retained desired state', 10_000);
    const gone = closed(dev);
    dev.publish(deviceTopic('acl-b', 'telemetry'), encodeJson(telemetryWindow('acl-b', 666)), { qos: 1 });
    await gone;
    expect(got).not.toContain(deviceTopic('acl-b', 'desired'));
    await sentinel('acl-b', b, 1);
    expect(storedSeqs('acl-b')).toEqual([1]);
  });

  it('mosquitto_sub and mosquitto_pub: the same refusals, while the same tools reach the device\'s own topics', async () => {
    const as = ['-i', 'acl-a', '-u', 'acl-a', '-P', a];
    // The tools work: A gets its own retained desired state and its own telemetry is ingested.
    const own = await mosquitto('mosquitto_sub', [...as, '-t', deviceTopic('acl-a', 'desired'), '-q', '1', '-C', '1']);
    expect(own).toMatchObject({ code: 0, stdout: 'for acl-a\n' });
    const ownPub = await mosquitto('mosquitto_pub', [...as, '-t', deviceTopic('acl-a', 'telemetry'), '-q', '1', '-m', JSON.stringify(telemetryWindow('acl-a', 7))]);
    expect(ownPub.code).toBe(0);
    await waitUntil(() => storedSeqs('acl-a').includes(7), 'acl-a window 7 ingested', 10_000);

    const sub = await mosquitto('mosquitto_sub', [...as, '-t', deviceTopic('acl-b', 'desired'), '-q', '1', '-C', '1']);
    expect(sub.stderr).toMatch(/All subscription requests were denied/);
    expect(sub.stdout).toBe('');
    const wild = await mosquitto('mosquitto_sub', [...as, '-t', 'perch/v1/devices/+/desired', '-q', '1', '-C', '1']);
    expect(wild.stderr).toMatch(/All subscription requests were denied/);
    expect(wild.stdout).toBe('');

    const pub = await mosquitto('mosquitto_pub', [...as, '-t', deviceTopic('acl-b', 'telemetry'), '-q', '1', '-m', JSON.stringify(telemetryWindow('acl-b', 777))]);
    expect(pub.stderr).toMatch(/connection was lost/i);
    expect(pub.code).not.toBe(0);
    // At QoS 0 the tool cannot tell, but the broker drops it all the same.
    await mosquitto('mosquitto_pub', [...as, '-t', deviceTopic('acl-b', 'telemetry'), '-q', '0', '-m', JSON.stringify(telemetryWindow('acl-b', 778))]);
    await sentinel('acl-b', b, 2);
    expect(storedSeqs('acl-b')).toEqual([1, 2]);
  });
});

describe('REST: credentials, labels, claim tokens', () => {
  it('issues a password once, labels a device for selectors, forgets credentials, and names the field at fault', async () => {
    const made = await rest('POST', '/devices/rest-1/credentials', { tags: ['outdoor'], groups: ['site-a'] });
    expect(made.status).toBe(201);
    const password = made.json.password as string;
    expect(made.json).toMatchObject({ deviceId: 'rest-1', username: 'rest-1' });
    await (await connect('rest-1', password)).endAsync();
    const view = await rest('GET', '/devices/rest-1/identity');
    expect(view.json).toMatchObject({ deviceId: 'rest-1', revoked: null, credentials: { claimTokenId: null }, tags: ['outdoor'], groups: ['site-a'] });
    expect(JSON.stringify(view.json)).not.toContain(password);

    expect((await rest('PUT', '/devices/rest-1/labels', { tags: ['night', 'outdoor', 'night'], groups: ['canary'] })).json).toEqual({ deviceId: 'rest-1', tags: ['night', 'outdoor'], groups: ['canary'] });
    expect(cp.services.identity.select({ groups: ['canary'] })).toEqual(['rest-1']);
    expect(cp.services.identity.select({ tags: ['night', 'outdoor'], ids: ['rest-1', 'acl-a'] })).toEqual(['rest-1']);

    // Forgotten: the old password stops working and the box may claim again.
    expect((await rest('DELETE', '/devices/rest-1/credentials')).json).toEqual({ deviceId: 'rest-1', forgotten: true });
    expect(await refusal('rest-1', password)).toMatch(/Bad username or password/);
    expect(await claim('rest-1', cp.claimToken)).toMatchObject({ status: 'issued' });

    const bad = async (method: string, path: string, body: unknown) => (await rest(method, path, body)).json.error as { code: string; field?: string };
    expect(await bad('PUT', '/devices/rest-1/labels', { tags: ['no spaces'], groups: [] })).toMatchObject({ code: 'validation_failed', field: 'tags.0' });
    expect(await bad('PUT', '/devices/rest-1/labels', { tags: [] })).toMatchObject({ field: 'groups' });
    expect(await bad('POST', '/claim-tokens', { name: '' })).toMatchObject({ field: 'name' });
    expect(await bad('POST', '/claim-tokens', { name: 'x', maxUses: 0 })).toMatchObject({ field: 'maxUses' });
    expect(await bad('POST', '/claim-tokens', { name: 'x', expiresAt: new Date(Date.now() - 1000).toISOString() })).toMatchObject({ field: 'expiresAt' });
    expect(await bad('POST', '/claim-tokens', '{oops')).toMatchObject({ code: 'validation_failed' });
    expect(await bad('POST', '/devices/bad id/credentials', {})).toMatchObject({ field: 'id' });
    expect(await rest('POST', '/devices/never-seen/revoke', {})).toMatchObject({ status: 404 });
    // The optional bodies may be left out altogether (curl -X POST); text that is not JSON is a 415.
    const bare = await fetch(`${api}/devices/rest-1/revoke`, { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}` } });
    expect(bare.status).toBe(200);
    expect(await bare.json()).toMatchObject({ deviceId: 'rest-1', reason: null });
    const text = await fetch(`${api}/devices/rest-1/credentials`, { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'text/plain' }, body: 'x' });
    expect(text.status).toBe(415);
    expect(await rest('DELETE', '/claim-tokens/ct-none')).toMatchObject({ status: 404 });
    // Admin only: no token, no secrets.
    expect((await rest('POST', '/claim-tokens', { name: 'x' }, { auth: false })).status).toBe(401);
    expect((await rest('POST', '/devices/rest-1/credentials', {}, { auth: false })).status).toBe(401);
  });
});
