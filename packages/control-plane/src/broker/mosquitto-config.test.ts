import { pbkdf2Sync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK_FRAME_HEADROOM, deviceTopic, encodeJson, MAX_CHUNK_BYTES, MAX_METADATA_BYTES, metadataResponseSchema } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAIMANT_ROLE, CONTROL_PLANE_ROLE, CONTROL_PLANE_USERNAME, deviceAcls, sharedClaimantAcls } from './mosquitto-acls.js';
import { MosquittoConfigError, PERCH_MAX_PACKET_BYTES, renderMosquittoConf, writeMosquittoConfig } from './mosquitto-config.js';
import type { DynsecFile } from './mosquitto-dynsec-file.js';

/** The size of a PUBLISH packet at QoS 1 as MQTT 3.1.1 frames it: fixed header, topic, packet id, payload. */
function publishPacketBytes(topic: string, payloadBytes: number): number {
  const remaining = 2 + Buffer.byteLength(topic) + 2 + payloadBytes;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + remaining;
}

const longestId = 'd'.repeat(64);

describe('max packet size', () => {
  it('fits the largest chunk frame', () => {
    const frame = CHUNK_FRAME_HEADROOM + MAX_CHUNK_BYTES;
    expect(publishPacketBytes(deviceTopic(longestId, 'artifact/chunk'), frame)).toBeLessThanOrEqual(PERCH_MAX_PACKET_BYTES);
  });

  it('fits a metadata response of the largest body that escapes worst', () => {
    // Every character of the body is one that JSON escapes to two bytes.
    const response = metadataResponseSchema.parse({ requestId: 'r'.repeat(64), name: '123456789.root.json', status: 200, body: '"'.repeat(MAX_METADATA_BYTES) });
    const payload = encodeJson(response);
    expect(payload.length).toBeGreaterThan(2 * MAX_METADATA_BYTES);
    expect(publishPacketBytes(deviceTopic(longestId, 'metadata/response'), payload.length)).toBeLessThanOrEqual(PERCH_MAX_PACKET_BYTES);
  });
});

describe('renderMosquittoConf', () => {
  it('writes one listener, no anonymous clients, the dynamic security plugin and the limits', () => {
    const conf = renderMosquittoConf({ brokerDir: '/srv/broker', host: '10.0.0.5', port: 1884 });
    const lines = conf.split('\n');
    for (const line of [
      'per_listener_settings false',
      'allow_anonymous false',
      'listener 1884 10.0.0.5',
      `max_packet_size ${PERCH_MAX_PACKET_BYTES}`,
      'max_queued_messages 100000',
      'persistence true',
      'persistence_location /srv/broker/data/',
      'plugin_opt_config_file /srv/broker/dynamic-security.json',
      'set_tcp_nodelay true',
    ]) {
      expect(lines).toContain(line);
    }
    expect(lines.filter((l) => l.startsWith('listener '))).toHaveLength(1);
    expect(conf).not.toMatch(/^(certfile|user) /m);
  });

  it('adds TLS to the listener', () => {
    const conf = renderMosquittoConf({ brokerDir: '/b', port: 8883, tls: { certFile: '/t/server.crt', keyFile: '/t/server.key', caFile: '/t/ca.crt', requireClientCertificate: true } });
    const after = conf.slice(conf.indexOf('listener 8883'));
    expect(after).toContain('certfile /t/server.crt\nkeyfile /t/server.key\ncafile /t/ca.crt\nrequire_certificate true');
  });

  it('refuses values that would add lines, relative broker folders and packet limits below Perch’s largest packet', () => {
    expect(() => renderMosquittoConf({ brokerDir: '/b', host: '127.0.0.1\nallow_anonymous true' })).toThrow(MosquittoConfigError);
    expect(() => renderMosquittoConf({ brokerDir: 'relative/dir' })).toThrow(/brokerDir.*absolute/);
    expect(() => renderMosquittoConf({ brokerDir: '/b', maxPacketBytes: MAX_CHUNK_BYTES })).toThrow(/maxPacketBytes/);
    expect(() => renderMosquittoConf({ brokerDir: '/b', tls: { certFile: '/c', keyFile: '/k', requireClientCertificate: true } })).toThrow(/caFile/);
  });
});

describe('device and claimant ACLs', () => {
  it('give a device its own topics by direction and no provisioning', () => {
    const acls = deviceAcls('cam-1');
    expect(acls).toContainEqual({ acltype: 'publishClientSend', topic: 'perch/v1/devices/cam-1/telemetry', allow: true });
    expect(acls).toContainEqual({ acltype: 'subscribeLiteral', topic: 'perch/v1/devices/cam-1/desired', allow: true });
    expect(acls).toContainEqual({ acltype: 'publishClientReceive', topic: 'perch/v1/devices/cam-1/desired', allow: true });
    expect(acls.some((a) => a.acltype === 'publishClientSend' && a.topic.endsWith('/desired'))).toBe(false);
    expect(acls.some((a) => a.topic.includes('provision'))).toBe(false);
    expect(acls.every((a) => a.topic.startsWith('perch/v1/devices/cam-1/') && a.allow)).toBe(true);
  });

  it('refuse ids that are not device ids', () => {
    expect(() => deviceAcls('a/#')).toThrow();
    expect(() => deviceAcls('perch.control-plane')).toThrow();
  });

  it('deny a shared claimant the wildcard response filter above its pattern grant', () => {
    const acls = sharedClaimantAcls();
    const deny = acls.find((a) => !a.allow);
    expect(deny).toMatchObject({ acltype: 'subscribeLiteral', topic: 'perch/v1/devices/+/provision/response' });
    expect(deny?.priority).toBeGreaterThan(0);
  });
});

describe('writeMosquittoConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'perch-mosquitto-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the config, a private dynamic security file and the control plane password the file was hashed with', async () => {
    const out = join(dir, 'fresh');
    const w = await writeMosquittoConfig({ outDir: out, port: 1999 });
    expect(w.createdDynsecFile).toBe(true);
    expect(w.username).toBe(CONTROL_PLANE_USERNAME);
    expect((await readFile(w.passwordFile, 'utf8')).trim()).toBe(w.password);
    expect((await stat(w.dynsecFile)).mode & 0o777).toBe(0o600);
    expect((await stat(w.passwordFile)).mode & 0o777).toBe(0o600);
    expect(await readFile(w.confFile, 'utf8')).toContain(`plugin_opt_config_file ${w.dynsecFile}`);

    const file = JSON.parse(await readFile(w.dynsecFile, 'utf8')) as DynsecFile;
    const cp = file.clients.find((c) => c.username === CONTROL_PLANE_USERNAME);
    expect(cp?.roles).toEqual([{ rolename: CONTROL_PLANE_ROLE }]);
    const hash = pbkdf2Sync(w.password, Buffer.from(cp?.salt ?? '', 'base64'), cp?.iterations ?? 0, 64, 'sha512').toString('base64');
    expect(hash).toBe(cp?.password);
    expect(file.roles.map((r) => r.rolename).sort()).toEqual([CLAIMANT_ROLE, CONTROL_PLANE_ROLE].sort());
    expect(file.defaultACLAccess).toEqual({ publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true });
  });

  it('keeps an existing dynamic security file, which holds the fleet, and its password', async () => {
    const out = join(dir, 'again');
    const first = await writeMosquittoConfig({ outDir: out, port: 1999 });
    const marker = '{"clients":[],"roles":[],"groups":[],"note":"the broker wrote this"}\n';
    await writeFile(first.dynsecFile, marker);
    const second = await writeMosquittoConfig({ outDir: out, port: 2000 });
    expect(second.createdDynsecFile).toBe(false);
    expect(second.password).toBe(first.password);
    expect(await readFile(second.dynsecFile, 'utf8')).toBe(marker);
    expect(await readFile(second.confFile, 'utf8')).toContain('listener 2000 0.0.0.0');
    await expect(writeMosquittoConfig({ outDir: out, controlPlanePassword: 'another-password-entirely' })).rejects.toThrow(/another control plane password/);
  });

  it('refuses a dynamic security file without the password file beside it', async () => {
    const out = join(dir, 'orphan');
    const w = await writeMosquittoConfig({ outDir: out });
    await rm(w.passwordFile);
    await expect(writeMosquittoConfig({ outDir: out })).rejects.toThrow(/control-plane.password does not/);
  });
});
