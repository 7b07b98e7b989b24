import { describe, expect, it } from 'vitest';
import { decodeJson } from './payload-codec.js';
import { sealingKeyPair, sealSecret } from './credential-sealing.js';
import { provisionRequestSchema, provisionResponseSchema } from './device-provisioning.js';
import { deviceTopic, isProvisionTopicKind, parseDeviceTopic } from './topics.js';

describe('provisioning contract', () => {
  it('puts the claim on its own topics, apart from every topic a device uses', () => {
    expect(parseDeviceTopic(deviceTopic('box-1', 'provision/request'))).toMatchObject({ kind: 'provision/request', direction: 'from-device' });
    expect(parseDeviceTopic(deviceTopic('box-1', 'provision/response'))).toMatchObject({ kind: 'provision/response', direction: 'to-device' });
    expect(isProvisionTopicKind('provision/request')).toBe(true);
    expect(isProvisionTopicKind('telemetry')).toBe(false);
  });

  it('names the field at fault in a malformed request or response', () => {
    const token = 'x'.repeat(43);
    const { publicKey } = sealingKeyPair();
    const good = { requestId: 'r', deviceId: 'box-1', claimToken: token, publicKey };
    expect(decodeJson(provisionRequestSchema, JSON.stringify(good)).ok).toBe(true);
    const bad = (payload: string) => {
      const d = decodeJson(provisionRequestSchema, payload);
      return d.ok ? 'ok' : d.error;
    };
    expect(bad('{"requestId": ')).toMatch(/malformed JSON/);
    expect(bad(JSON.stringify({ requestId: 'r', deviceId: 'box-1', publicKey }))).toMatch(/^claimToken:/);
    expect(bad(JSON.stringify({ ...good, claimToken: 'short' }))).toMatch(/claimToken: a claim token has at least 16 characters/);
    expect(bad(JSON.stringify({ ...good, deviceId: 'a/b' }))).toMatch(/^deviceId:/);
    expect(bad(JSON.stringify({ ...good, requestId: '' }))).toMatch(/^requestId:/);
    expect(bad(JSON.stringify({ ...good, publicKey: 'not a key' }))).toMatch(/^publicKey: an X25519 public key/);

    const issued = { requestId: 'r', deviceId: 'box-1', status: 'issued', username: 'box-1', password: sealSecret('p'.repeat(43), publicKey, 'c'), issuedAt: 1 };
    expect(provisionResponseSchema.safeParse(issued).success).toBe(true);
    // Never a password in clear.
    expect(provisionResponseSchema.safeParse({ ...issued, password: 'p'.repeat(43) }).success).toBe(false);
    const refused = { requestId: 'r', deviceId: 'box-1', status: 'refused', code: 'device-revoked', reason: 'revoked' };
    expect(provisionResponseSchema.safeParse(refused).success).toBe(true);
    expect(provisionResponseSchema.safeParse({ ...refused, code: 'because' }).success).toBe(false);
  });
});
