import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { deviceTopic, type DeviceTopicKind } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimTokenUsername, claimTokenUsernameFor, deviceAcls, deviceRoleName } from '../packages/control-plane/src/broker/mosquitto-acls.js';
import { MosquittoBrokerAccess } from '../packages/control-plane/src/broker/mosquitto-broker-access.js';
import { DynsecClient } from '../packages/control-plane/src/broker/mosquitto-dynsec.js';
import { connectTo, grantedCodes, reasonOf, startMosquitto, whenClosed, type MosquittoServer } from './support/mosquitto-server.js';

/**
 * The identities the control plane gives a real Mosquitto 2.0 broker through
 * MosquittoBrokerAccess, and what each can and cannot do there.
 */

const A = 'dev-a';
const B = 'dev-b';
const PW_A = 'password-of-device-a-0123456789abcdef';
const PW_B = 'password-of-device-b-0123456789abcdef';
const SHARED_TOKEN = 'shared-claim-token-0123456789abcdef';
const BOUND_TOKEN = 'bound-claim-token-0123456789abcdef';

const topic = (id: string, kind: DeviceTopicKind) => deviceTopic(id, kind);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    // The timeout only ends a hung client; nothing is asserted on time.
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every message a client receives, and a wait for the first one on a topic. */
class Inbox {
  readonly messages: { topic: string; payload: string }[] = [];
  private readonly waiters: { topic: string; resolve: (payload: string) => void }[] = [];

  constructor(client: MqttClient) {
    client.on('message', (t, p) => {
      this.messages.push({ topic: t, payload: p.toString() });
      for (const w of this.waiters.filter((x) => x.topic === t)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(p.toString());
      }
    });
  }

  /** The next message on `topic` from now on. */
  next(t: string): Promise<string> {
    return new Promise((resolve) => this.waiters.push({ topic: t, resolve }));
  }

  topics(): string[] {
    return this.messages.map((m) => m.topic);
  }
}

describe('device and claimant access on Mosquitto', () => {
  let server: MosquittoServer;
  let dynsec: DynsecClient;
  let access: MosquittoBrokerAccess;
  let cp: MqttClient;
  let cpInbox: Inbox;
  const clients: MqttClient[] = [];

  const connect = async (username: string, password: string, clientId: string, protocolVersion: 4 | 5 = 4) => {
    const c = await connectTo(server, { username, password, clientId, protocolVersion });
    clients.push(c);
    return c;
  };
  const cli = (username: string, password: string, clientId: string) => ['-h', '127.0.0.1', '-p', String(server.port), '-u', username, '-P', password, '-i', clientId];

  beforeAll(async () => {
    server = await startMosquitto();
    dynsec = await DynsecClient.connect(server.url, { ...server.admin, clientId: 'cp-admin' });
    access = new MosquittoBrokerAccess(dynsec);
    await access.addDevice(A, PW_A);
    await access.addDevice(B, PW_B);
    cp = await connectTo(server, { ...server.admin, clientId: 'cp-bus', protocolVersion: 5 });
    cpInbox = new Inbox(cp);
    await cp.subscribeAsync('perch/#', { qos: 1 });
  });

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true);
    await cp?.endAsync(true);
    await dynsec?.close();
    await server?.stop();
  });

  it('pins why each device has a role of its own: Mosquitto 2.0 substitutes no %c in dynamic security ACLs', async () => {
    await dynsec.createRole('pattern-role', [{ acltype: 'publishClientSend', topic: 'perch/v1/devices/%c/telemetry', allow: true }]);
    await dynsec.createClient({ username: 'pattern-dev', password: 'pattern-password', clientid: 'pattern-dev', roles: [{ rolename: 'pattern-role' }] });
    const c = await connect('pattern-dev', 'pattern-password', 'pattern-dev', 5);
    const err = await c.publishAsync(topic('pattern-dev', 'telemetry'), 'w', { qos: 1 }).catch((e: unknown) => e);
    // 0x87 not authorised: the pattern granted nothing. Should an upgrade make this pass, one pattern role could replace the per-device roles.
    expect(reasonOf(err)).toBe(0x87);
  });

  describe('a device', () => {
    it('connects with its password and its telemetry reaches the control plane', async () => {
      const a = await connect(A, PW_A, A);
      const got = cpInbox.next(topic(A, 'telemetry'));
      await a.publishAsync(topic(A, 'telemetry'), 'window-1', { qos: 1 });
      expect(await got).toBe('window-1');
    });

    it('may not publish another device’s topics, nor a to-device topic of its own', async () => {
      const a5 = await connect(A, PW_A, A, 5);
      for (const t of [topic(B, 'telemetry'), topic(B, 'status'), topic(A, 'desired'), topic(A, 'provision/request'), 'perch/v1/other']) {
        const err = await a5.publishAsync(t, 'forged', { qos: 1 }).catch((e: unknown) => e);
        expect(reasonOf(err), t).toBe(0x87);
      }
      // MQTT 3.1.1 has no refusal code: the broker acknowledges and drops. The later own
      // publish is a barrier: were the forged one delivered, it would have come first.
      const a4 = await connect(A, PW_A, A);
      await a4.publishAsync(topic(B, 'telemetry'), 'forged-3', { qos: 1 });
      const barrier = cpInbox.next(topic(A, 'events'));
      await a4.publishAsync(topic(A, 'events'), 'barrier', { qos: 1 });
      await barrier;
      expect(cpInbox.messages.filter((m) => m.payload.startsWith('forged'))).toEqual([]);
    });

    it('may subscribe its own to-device topics only, exactly, and gets nothing of another device', async () => {
      const a4 = await connect(A, PW_A, A);
      const inbox4 = new Inbox(a4);
      const codes = await grantedCodes(
        a4.subscribeAsync({
          [topic(B, 'desired')]: { qos: 1 },
          [topic(A, 'telemetry')]: { qos: 1 },
          'perch/v1/devices/+/desired': { qos: 1 },
          [`perch/v1/devices/${A}/#`]: { qos: 1 },
          [topic(A, 'desired')]: { qos: 1 },
        }),
      );
      // MQTT 3.1.1's failure code for each refused filter; the last, its own, at QoS 1.
      expect(codes).toEqual([0x80, 0x80, 0x80, 0x80, 1]);
      await cp.publishAsync(topic(B, 'desired'), 'for-b', { qos: 1 });
      const own = inbox4.next(topic(A, 'desired'));
      await cp.publishAsync(topic(A, 'desired'), 'for-a', { qos: 1 });
      expect(await own).toBe('for-a');
      expect(inbox4.topics()).toEqual([topic(A, 'desired')]);
      await a4.endAsync();

      const a5 = await connect(A, PW_A, A, 5);
      expect(await grantedCodes(a5.subscribeAsync(topic(B, 'desired'), { qos: 1 }))).toEqual([0x87]);
    });

    it('is held to the same rules through the mosquitto_pub and mosquitto_sub clients', async () => {
      const denied = await run('mosquitto_pub', [...cli(A, PW_A, A), '-V', 'mqttv5', '-q', '1', '-t', topic(B, 'telemetry'), '-m', 'forged-cli']);
      expect(denied.stderr).toMatch(/Publish 1 failed: Not authorized/);
      const barrier = cpInbox.next(topic(A, 'telemetry'));
      const ok = await run('mosquitto_pub', [...cli(A, PW_A, A), '-V', 'mqttv5', '-q', '1', '-t', topic(A, 'telemetry'), '-m', 'cli-window']);
      expect(ok).toMatchObject({ code: 0, stderr: '' });
      expect(await barrier).toBe('cli-window');
      expect(cpInbox.messages.filter((m) => m.payload === 'forged-cli')).toEqual([]);

      const sub = await run('mosquitto_sub', [...cli(A, PW_A, A), '-t', topic(B, 'desired'), '-C', '1']);
      expect(sub.stderr).toMatch(/All subscription requests were denied/);
      expect(sub.stdout).toBe('');

      await cp.publishAsync(topic(A, 'desired'), 'retained-for-a', { qos: 1, retain: true });
      const own = await run('mosquitto_sub', [...cli(A, PW_A, A), '-t', topic(A, 'desired'), '-C', '1']);
      expect(own).toMatchObject({ code: 0, stdout: 'retained-for-a\n' });
    });

    it('is refused with a wrong password, another device’s password, another client id or an unknown name', async () => {
      for (const [username, password, clientId] of [
        [A, 'wrong-password', A],
        [A, PW_B, A],
        [A, PW_A, B],
        ['dev-unknown', PW_A, 'dev-unknown'],
      ] as const) {
        const v4 = await connect(username, password, clientId).catch((e: unknown) => e);
        expect(reasonOf(v4), `${username}/${clientId}`).toBe(5);
        const v5 = await connect(username, password, clientId, 5).catch((e: unknown) => e);
        expect(reasonOf(v5), `${username}/${clientId}`).toBe(0x87);
      }
      const cliRefused = await run('mosquitto_pub', [...cli(A, 'wrong-password', A), '-t', topic(A, 'telemetry'), '-m', 'x']);
      expect(cliRefused.code).not.toBe(0);
      expect(cliRefused.stderr).toMatch(/not authori[sz]ed/i);
    });

    it('loses its connection when its password is replaced, and comes back only with the new one', async () => {
      const c = await connect(B, PW_B, B);
      const closed = whenClosed(c);
      await access.addDevice(B, `${PW_B}-rotated`);
      await closed;
      expect(reasonOf(await connect(B, PW_B, B).catch((e: unknown) => e))).toBe(5);
      await connect(B, `${PW_B}-rotated`, B);
    });

    it('is kicked by disableClient and kept out until enableClient', async () => {
      const c = await connect(B, `${PW_B}-rotated`, B, 5);
      const closed = whenClosed(c);
      await dynsec.disableClient(B);
      await closed;
      expect(reasonOf(await connect(B, `${PW_B}-rotated`, B, 5).catch((e: unknown) => e))).toBe(0x87);
      await dynsec.enableClient(B);
      await connect(B, `${PW_B}-rotated`, B, 5);
    });

    it('is kicked by revocation and kept out; revoking again is fine', async () => {
      await access.addDevice('dev-gone', 'password-of-a-device-to-revoke');
      const c = await connect('dev-gone', 'password-of-a-device-to-revoke', 'dev-gone');
      const closed = whenClosed(c);
      await access.revokeDevice('dev-gone');
      await closed;
      expect(reasonOf(await connect('dev-gone', 'password-of-a-device-to-revoke', 'dev-gone').catch((e: unknown) => e))).toBe(5);
      expect(await dynsec.getRole(deviceRoleName('dev-gone'))).toBeNull();
      await access.revokeDevice('dev-gone');
    });

    it('gets its role’s ACLs brought up to date when it is added again', async () => {
      await dynsec.createRole(deviceRoleName('dev-old'), [{ acltype: 'publishClientSend', topic: 'perch/v1/devices/dev-old/retired-kind', allow: true }]);
      await access.addDevice('dev-old', 'password-of-an-old-device-0123');
      await access.addDevice('dev-old', 'password-of-an-old-device-0123');
      const acls = (await dynsec.getRole(deviceRoleName('dev-old')))?.acls.map(({ priority: _p, ...a }) => a);
      expect(new Set(acls?.map((a) => JSON.stringify(a)))).toEqual(new Set(deviceAcls('dev-old').map((a) => JSON.stringify(a))));
      expect(await dynsec.getClient('dev-old')).toMatchObject({ clientid: 'dev-old', roles: [{ rolename: deviceRoleName('dev-old') }] });
    });
  });

  describe('a claimant', () => {
    const sharedUser = () => claimTokenUsernameFor(SHARED_TOKEN);

    beforeAll(async () => {
      await access.addClaimToken(SHARED_TOKEN, { name: 'factory batch' });
      await access.addClaimToken(BOUND_TOKEN, { deviceId: 'box-7' });
    });

    it('is named by its token’s SHA-256, which the control plane keeps', () => {
      const sha = createHash('sha256').update(SHARED_TOKEN).digest('hex');
      expect(sharedUser()).toBe(claimTokenUsername(sha));
      expect(sharedUser()).toBe(`perch.claim.${sha.slice(0, 32)}`);
    });

    it('of a shared token uses its own provision topics and nothing else', async () => {
      const c = await connect(sharedUser(), SHARED_TOKEN, 'new-box', 5);
      const request = cpInbox.next(topic('new-box', 'provision/request'));
      await c.publishAsync(topic('new-box', 'provision/request'), 'claim-me', { qos: 1 });
      expect(await request).toBe('claim-me');

      const inbox = new Inbox(c);
      await c.subscribeAsync(topic('new-box', 'provision/response'), { qos: 1 });
      const answer = inbox.next(topic('new-box', 'provision/response'));
      await cp.publishAsync(topic('new-box', 'provision/response'), 'credentials', { qos: 1 });
      expect(await answer).toBe('credentials');

      for (const t of [topic('new-box', 'telemetry'), topic('new-box', 'status'), topic(A, 'telemetry')]) {
        expect(reasonOf(await c.publishAsync(t, 'x', { qos: 1 }).catch((e: unknown) => e)), t).toBe(0x87);
      }
      for (const f of [topic('new-box', 'desired'), 'perch/v1/devices/+/provision/response', 'perch/v1/devices/#', '#']) {
        expect(await grantedCodes(c.subscribeAsync(f, { qos: 1 })), f).toEqual([0x87]);
      }
    });

    it('of a shared token can still name another device’s response topic exactly (the limit of Mosquitto 2.0)', async () => {
      // Without %c nothing ties a shared token's claimant to one device id; see docs/deploy-external-broker.md.
      const c = await connect(sharedUser(), SHARED_TOKEN, 'snooper');
      expect(await grantedCodes(c.subscribeAsync(topic('victim-box', 'provision/response'), { qos: 1 }))).toEqual([1]);
    });

    it('of a token bound to a device must use that device id and only its topics', async () => {
      const user = claimTokenUsernameFor(BOUND_TOKEN);
      expect(reasonOf(await connect(user, BOUND_TOKEN, 'box-8').catch((e: unknown) => e))).toBe(5);
      const c = await connect(user, BOUND_TOKEN, 'box-7', 5);
      const request = cpInbox.next(topic('box-7', 'provision/request'));
      await c.publishAsync(topic('box-7', 'provision/request'), 'bound-claim', { qos: 1 });
      expect(await request).toBe('bound-claim');
      expect(reasonOf(await c.publishAsync(topic('box-8', 'provision/request'), 'x', { qos: 1 }).catch((e: unknown) => e))).toBe(0x87);
      expect(await grantedCodes(c.subscribeAsync(topic('box-8', 'provision/response'), { qos: 1 }))).toEqual([0x87]);
      expect(await grantedCodes(c.subscribeAsync(topic('box-7', 'provision/response'), { qos: 1 }))).toEqual([1]);
    });

    it('gets nothing of a persistent control plane session whose client id it borrows', async () => {
      const cpSession = await connectTo(server, { ...server.admin, clientId: 'cp-persistent', clean: false });
      await cpSession.subscribeAsync('perch/#', { qos: 1 });
      await cpSession.endAsync();
      const thief = mqtt.connect(server.url, { username: sharedUser(), password: SHARED_TOKEN, clientId: 'cp-persistent', clean: false, reconnectPeriod: 0 });
      clients.push(thief);
      const inbox = new Inbox(thief);
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => thief.once('connect', resolve));
      // Mosquitto 2.0 resumes a persistent session for whoever brings its client id, whatever the username.
      expect(connack.sessionPresent).toBe(true);
      const a = await connect(A, PW_A, A);
      await a.publishAsync(topic(A, 'telemetry'), 'secret-window', { qos: 1 });
      // A topic its role may receive, through the session's subscription (it made none): a barrier after the telemetry.
      const barrier = inbox.next(topic('cp-persistent', 'provision/response'));
      await cp.publishAsync(topic('cp-persistent', 'provision/response'), 'barrier', { qos: 1 });
      await barrier;
      // Deny-by-default receiving keeps the control plane's telemetry from it.
      expect(inbox.messages.map((m) => m.payload)).toEqual(['barrier']);
    });

    it('is refused with a wrong token', async () => {
      expect(reasonOf(await connect(sharedUser(), `${SHARED_TOKEN}-not`, 'new-box').catch((e: unknown) => e))).toBe(5);
    });

    it('loses its connection when its token is removed, every claimant of it, and is kept out', async () => {
      const one = await connect(sharedUser(), SHARED_TOKEN, 'box-x');
      const two = await connect(sharedUser(), SHARED_TOKEN, 'box-y');
      const closed = Promise.all([whenClosed(one), whenClosed(two)]);
      await access.removeClaimToken(createHash('sha256').update(SHARED_TOKEN).digest('hex'));
      await closed;
      expect(reasonOf(await connect(sharedUser(), SHARED_TOKEN, 'box-x').catch((e: unknown) => e))).toBe(5);
      // The bound token is its own client and role: removing it leaves no role behind.
      const boundSha = createHash('sha256').update(BOUND_TOKEN).digest('hex');
      await access.removeClaimToken(boundSha);
      expect(await dynsec.getRole(claimTokenUsername(boundSha))).toBeNull();
      await access.removeClaimToken(boundSha);
    });
  });
});
