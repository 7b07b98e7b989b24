import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_PLANE_ROLE, CONTROL_PLANE_USERNAME } from '../packages/control-plane/src/broker/mosquitto-acls.js';
import {
  DynsecClient,
  DynsecCommandError,
  DynsecError,
  DynsecTimeoutError,
  DYNSEC_RESPONSE_TOPIC,
} from '../packages/control-plane/src/broker/mosquitto-dynsec.js';
import { connectTo, startMosquitto, whenClosed, type MosquittoServer } from './support/mosquitto-server.js';

/** The dynamic security admin client against a real Mosquitto 2.0 with Perch's generated config. */
describe('dynamic security admin client', () => {
  let server: MosquittoServer;
  let dynsec: DynsecClient;
  const opened: MqttClient[] = [];
  const adminClient = (clientId: string, timeoutMs?: number) =>
    DynsecClient.connect(server.url, { ...server.admin, clientId }, timeoutMs === undefined ? {} : { timeoutMs });

  beforeAll(async () => {
    server = await startMosquitto();
    dynsec = await adminClient('cp-admin-1');
  });

  afterAll(async () => {
    for (const c of opened) await c.endAsync(true);
    await dynsec?.close();
    await server?.stop();
  });

  it('reads the control plane client and role that the generated file holds', async () => {
    const me = await dynsec.getClient(CONTROL_PLANE_USERNAME);
    expect(me?.roles.map((r) => r.rolename)).toEqual([CONTROL_PLANE_ROLE]);
    const role = await dynsec.getRole(CONTROL_PLANE_ROLE);
    expect(role?.acls).toContainEqual({ acltype: 'subscribePattern', topic: 'perch/#', allow: true, priority: 0 });
    expect((await dynsec.listClients()).clients).toContain(CONTROL_PLANE_USERNAME);
    expect((await dynsec.listRoles()).roles).toContain(CONTROL_PLANE_ROLE);
  });

  it('creates, lists, changes and deletes clients and roles', async () => {
    await dynsec.createRole('t-role', [{ acltype: 'publishClientSend', topic: 'perch/v1/devices/t1/telemetry', allow: true }]);
    await dynsec.addRoleACL('t-role', { acltype: 'subscribeLiteral', topic: 'perch/v1/devices/t1/desired', allow: true });
    await dynsec.createClient({ username: 't1', password: 'first-password', clientid: 't1' });
    await dynsec.addClientRole('t1', 't-role');
    expect(await dynsec.getClient('t1')).toMatchObject({ username: 't1', clientid: 't1', roles: [{ rolename: 't-role' }] });
    expect((await dynsec.getRole('t-role'))?.acls.map((a) => a.acltype).sort()).toEqual(['publishClientSend', 'subscribeLiteral']);
    await dynsec.removeRoleACL('t-role', 'subscribeLiteral', 'perch/v1/devices/t1/desired');
    expect((await dynsec.getRole('t-role'))?.acls).toHaveLength(1);

    await dynsec.setClientPassword('t1', 'second-password');
    const c = await connectTo(server, { username: 't1', password: 'second-password', clientId: 't1' });
    opened.push(c);
    await dynsec.removeClientRole('t1', 't-role');
    await dynsec.deleteClient('t1');
    await whenClosed(c);
    await dynsec.deleteRole('t-role');
    expect(await dynsec.getClient('t1')).toBeNull();
    expect(await dynsec.getRole('t-role')).toBeNull();
  });

  it('surfaces a refusal with the broker’s words and what it was about', async () => {
    const err = await dynsec.deleteClient('nobody-here').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DynsecCommandError);
    expect((err as DynsecCommandError).notFound).toBe(true);
    expect((err as Error).message).toBe('dynamic security deleteClient nobody-here refused: Client not found');

    await dynsec.createRole('dup-role');
    const dup = await dynsec.createRole('dup-role').catch((e: unknown) => e);
    expect((dup as DynsecCommandError).alreadyExists).toBe(true);
    await expect(dynsec.addRoleACL('dup-role', { acltype: 'publishClientSend', topic: 'a/#/b', allow: true })).rejects.toThrow(/Invalid ACL topic/);
    await dynsec.deleteRole('dup-role');
  });

  it('answers each command of a batch in order, refusals included', async () => {
    const answers = await dynsec.execute([
      { command: 'createRole', rolename: 'batch-role' },
      { command: 'createRole', rolename: 'batch-role' },
      { command: 'getRole', rolename: 'batch-role' },
      { command: 'deleteRole', rolename: 'batch-role' },
    ]);
    expect(answers.map((a) => [a.command, a.error])).toEqual([
      ['createRole', undefined],
      ['createRole', 'Role already exists'],
      ['getRole', undefined],
      ['deleteRole', undefined],
    ]);
  });

  it('keeps its answers apart from another admin client’s on the same response topic', async () => {
    const other = await adminClient('cp-admin-2');
    try {
      const names = Array.from({ length: 20 }, (_, i) => `both-${i}`);
      // Both send at once; each must get back exactly its own clients.
      const [mine, theirs] = await Promise.all([
        Promise.all(names.map((n) => dynsec.createClient({ username: `a-${n}`, password: 'pw' }).then(() => dynsec.getClient(`a-${n}`)))),
        Promise.all(names.map((n) => other.createClient({ username: `b-${n}`, password: 'pw' }).then(() => other.getClient(`b-${n}`)))),
      ]);
      expect(mine.map((c) => c?.username)).toEqual(names.map((n) => `a-${n}`));
      expect(theirs.map((c) => c?.username)).toEqual(names.map((n) => `b-${n}`));
      await Promise.all(names.flatMap((n) => [dynsec.deleteClient(`a-${n}`), other.deleteClient(`b-${n}`)]));
    } finally {
      await other.close();
    }
  });

  it('gets answers from the plugin alone: a client publishing on the response topic reaches nobody', async () => {
    const seen: string[] = [];
    const listener = await DynsecClient.connect(server.url, { ...server.admin, clientId: 'cp-admin-3' }, { onInvalidResponse: (d) => seen.push(d) });
    try {
      const raw = await connectTo(server, { ...server.admin, clientId: 'cp-raw' });
      opened.push(raw);
      // Even the control plane's own identity: Mosquitto hands $CONTROL publishes to the plugin, never to subscribers.
      await raw.publishAsync(DYNSEC_RESPONSE_TOPIC, '{"responses":"nope"}', { qos: 1 });
      await raw.publishAsync(DYNSEC_RESPONSE_TOPIC, JSON.stringify({ responses: [{ command: 'listRoles', correlationData: 'x', data: {} }] }), { qos: 1 });
      // Answered after the two publishes, on the same topic.
      expect((await listener.listRoles()).roles).toContain(CONTROL_PLANE_ROLE);
      expect(seen).toEqual([]);
    } finally {
      await listener.close();
    }
  });

  it('times out, naming the command, when nobody answers', async () => {
    await dynsec.createRole('mute-role', [{ acltype: 'subscribePattern', topic: DYNSEC_RESPONSE_TOPIC, allow: true }, { acltype: 'publishClientReceive', topic: DYNSEC_RESPONSE_TOPIC, allow: true }]);
    await dynsec.createClient({ username: 'mute', password: 'mute-password', roles: [{ rolename: 'mute-role' }] });
    // MQTT 3.1.1: the broker drops the publish it may not accept without saying so.
    const mute = await DynsecClient.connect(server.url, { username: 'mute', password: 'mute-password', clientId: 'mute', protocolVersion: 4 }, { timeoutMs: 300 });
    try {
      const err = await mute.listClients().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DynsecTimeoutError);
      expect((err as Error).message).toMatch(/^dynamic security listClients got no answer in 300 ms/);
    } finally {
      await mute.close();
    }
  });

  it('fails at once when MQTT 5 says the publish was not authorised', async () => {
    const mute = await DynsecClient.connect(server.url, { username: 'mute', password: 'mute-password', clientId: 'mute5' }, { timeoutMs: 60_000 });
    try {
      const err = await mute.listClients().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DynsecError);
      expect(err).not.toBeInstanceOf(DynsecTimeoutError);
      expect((err as Error).message).toMatch(/could not send dynamic security listClients: .*Not authorized/);
    } finally {
      await mute.close();
    }
  });

  it('refuses to start for a client that may not read the answers', async () => {
    await dynsec.createClient({ username: 'nobody-special', password: 'pw-nobody' });
    await expect(DynsecClient.connect(server.url, { username: 'nobody-special', password: 'pw-nobody', clientId: 'ns' })).rejects.toThrow();
  });
});
