import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { openDatabase, type Db } from '../store/database.js';
import { DeviceStore } from '../store/device-store.js';
import { DEFAULT_CLAIM_TOKEN_ID, DeviceIdentityService, IdentityError, type ClaimResult } from './device-identity-service.js';

/** The identity service on a real SQLite file, with a clock the test moves. */
let dir: string;
let db: Db;
let devices: DeviceStore;
let identity: DeviceIdentityService;
let now: number;
const ended: string[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'perch-identity-'));
  db = openDatabase(join(dir, 'perch.db'));
  devices = new DeviceStore(db);
  now = Date.UTC(2030, 0, 1);
  ended.length = 0;
  identity = new DeviceIdentityService(db, devices, createLogger('silent'), {
    now: () => now,
    endSession: async (id) => {
      ended.push(id);
      return true;
    },
  });
});

afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const auth = (id: string, secret: string) => identity.authenticateDevice(id, Buffer.from(secret));
const claim = (deviceId: string, claimToken: string): ClaimResult => identity.claim(deviceId, claimToken);
const refusal = (r: ClaimResult) => (r.status === 'refused' ? r.code : 'issued');

describe('per-device credentials', () => {
  it('issues a 256-bit secret, keeps only its SHA-256, and knows the device by it alone', () => {
    const { username, password } = identity.provision('gate-1');
    expect(username).toBe('gate-1');
    expect(Buffer.from(password, 'base64url')).toHaveLength(32);
    const row = db.prepare('SELECT * FROM device_credentials WHERE device_id = ?').get('gate-1') as Record<string, unknown>;
    expect(row.secret_sha256).toBe(createHash('sha256').update(password).digest('hex'));
    expect(JSON.stringify(row)).not.toContain(password);

    expect(auth('gate-1', password)).toEqual({ ok: true, principal: { kind: 'device', deviceId: 'gate-1' } });
    expect(auth('gate-1', `${password}x`)).toMatchObject({ ok: false, reason: 'wrong secret for this device' });
    // Another device's secret is no secret of this one.
    const other = identity.provision('gate-2').password;
    expect(auth('gate-1', other).ok).toBe(false);
    expect(auth('gate-9', password)).toMatchObject({ ok: false, reason: 'no credentials for this device id' });
  });

  it('replaces old credentials when provisioned again and ends the session that used them', () => {
    const first = identity.provision('gate-1').password;
    expect(ended).toEqual([]);
    const second = identity.provision('gate-1', { tags: ['outdoor'], groups: ['site-a'] }).password;
    expect(auth('gate-1', first).ok).toBe(false);
    expect(auth('gate-1', second).ok).toBe(true);
    expect(ended).toEqual(['gate-1']);
    expect(identity.labels('gate-1')).toEqual({ tags: ['outdoor'], groups: ['site-a'] });
  });

  it('revokes: credentials gone, session ended, claims refused; issuing credentials again re-admits it', async () => {
    const { password } = identity.provision('gate-1');
    const revoked = await identity.revoke('gate-1', 'stolen from the gate');
    expect(revoked).toMatchObject({ deviceId: 'gate-1', reason: 'stolen from the gate', disconnected: true });
    expect(auth('gate-1', password).ok).toBe(false);
    expect(identity.identity('gate-1')).toMatchObject({ revoked: { at: now, reason: 'stolen from the gate' }, credentials: null });
    const token = (await identity.createClaimToken({ name: 'site-a' })).token;
    const answer = claim('gate-1', token);
    expect(refusal(answer)).toBe('device-revoked');
    expect(answer.status === 'refused' && answer.reason).toMatch(/stolen from the gate/);

    const again = identity.provision('gate-1').password;
    expect(auth('gate-1', again).ok).toBe(true);
    expect(identity.identity('gate-1').revoked).toBeNull();
    await expect(identity.revoke('never-seen')).rejects.toThrow(IdentityError);
  });
});

describe('claim tokens', () => {
  it('a claim issues credentials, counts a use and gives the token\'s tags and groups', async () => {
    const { token, record } = await identity.createClaimToken({ name: 'site-a', maxUses: 5, tags: ['outdoor', 'outdoor'], groups: ['site-a'] });
    expect(record).toMatchObject({ name: 'site-a', maxUses: 5, uses: 0, tags: ['outdoor'], groups: ['site-a'], revokedAt: null });
    // The token authenticates any device id as a claimant, never as a device.
    expect(auth('box-1', token)).toEqual({ ok: true, principal: { kind: 'claimant', deviceId: 'box-1', claimTokenId: record.id } });

    const answer = claim('box-1', token);
    if (answer.status !== 'issued') throw new Error(`refused: ${answer.reason}`);
    expect(answer).toMatchObject({ deviceId: 'box-1', username: 'box-1', issuedAt: now });
    expect(auth('box-1', answer.password)).toEqual({ ok: true, principal: { kind: 'device', deviceId: 'box-1' } });
    expect(identity.claimTokens().find((t) => t.id === record.id)?.uses).toBe(1);
    expect(identity.labels('box-1')).toEqual({ tags: ['outdoor'], groups: ['site-a'] });
    expect(identity.identity('box-1').credentials).toMatchObject({ claimTokenId: record.id, usedAt: now });
  });

  it('refuses, with the reason, an unknown, revoked, expired or used-up token', async () => {
    expect(refusal(claim('box-1', 'x'.repeat(43)))).toBe('claim-token-unknown');

    const revoked = await identity.createClaimToken({ name: 'old batch' });
    await identity.revokeClaimToken(revoked.record.id);
    const r1 = claim('box-1', revoked.token);
    expect(refusal(r1)).toBe('claim-token-revoked');
    expect(r1.status === 'refused' && r1.reason).toMatch(/old batch/);

    const expiring = await identity.createClaimToken({ name: 'one day', expiresAt: now + 86_400_000 });
    now += 86_400_000;
    expect(refusal(claim('box-1', expiring.token))).toBe('claim-token-expired');

    const once = await identity.createClaimToken({ name: 'single', maxUses: 1 });
    expect(refusal(claim('box-1', once.token))).toBe('issued');
    const r2 = claim('box-2', once.token);
    expect(refusal(r2)).toBe('claim-token-used-up');
    expect(r2.status === 'refused' && r2.reason).toMatch(/used 1 of 1/);
    expect(identity.claimTokens().find((t) => t.id === once.record.id)?.uses).toBe(1);
    expect(devices.get('box-2')).toBeNull();
    await expect(identity.createClaimToken({ name: 'late', expiresAt: now - 1 })).rejects.toThrow(/future/);
    await expect(identity.revokeClaimToken('ct-none')).rejects.toThrow(IdentityError);
  });

  it('refuses a device whose credentials were used or issued by an operator, but lets a lost answer be claimed again', async () => {
    const { token, record } = await identity.createClaimToken({ name: 'site-a', maxUses: 2 });
    const first = claim('box-1', token);
    // The box lost the answer before it could use it: asking again is answered, and counted once.
    const second = claim('box-1', token);
    if (first.status !== 'issued' || second.status !== 'issued') throw new Error('refused');
    expect(second.password).not.toBe(first.password);
    expect(auth('box-1', first.password).ok).toBe(false);
    expect(identity.claimTokens().find((t) => t.id === record.id)?.uses).toBe(1);

    // Once used, the id is taken.
    expect(auth('box-1', second.password).ok).toBe(true);
    const third = claim('box-1', token);
    expect(refusal(third)).toBe('device-has-credentials');
    expect(third.status === 'refused' && third.reason).toMatch(/DELETE \/api\/v1\/devices\/box-1\/credentials/);
    // Operator-issued credentials are never claimed over, used or not.
    identity.provision('gate-1');
    expect(refusal(claim('gate-1', token))).toBe('device-has-credentials');
  });

  it('makes the default token once, follows a changed configured secret, and keeps an operator\'s revocation', async () => {
    const secret = 'a-configured-claim-token-0001';
    identity.ensureDefaultClaimToken(secret);
    identity.ensureDefaultClaimToken(secret);
    expect(identity.claimTokens().map((t) => [t.id, t.maxUses, t.expiresAt])).toEqual([[DEFAULT_CLAIM_TOKEN_ID, null, null]]);
    await identity.revokeClaimToken(DEFAULT_CLAIM_TOKEN_ID);
    identity.ensureDefaultClaimToken(secret);
    expect(refusal(claim('box-1', secret))).toBe('claim-token-revoked');
    // A new configured secret is a new token: the old one stops working.
    identity.ensureDefaultClaimToken('another-configured-token-0002');
    expect(refusal(claim('box-1', secret))).toBe('claim-token-unknown');
    expect(refusal(claim('box-1', 'another-configured-token-0002'))).toBe('issued');
  });
});

describe('tags, groups and selection', () => {
  it('selects by ids and groups (any of) and tags (all of), never revoked devices', async () => {
    for (const id of ['a1', 'a2', 'b1', 'b2']) identity.provision(id);
    identity.setLabels('a1', { tags: ['outdoor', 'night'], groups: ['site-a'] });
    identity.setLabels('a2', { tags: ['outdoor'], groups: ['site-a', 'canary'] });
    identity.setLabels('b1', { tags: ['night', 'outdoor'], groups: ['site-b'] });
    identity.setLabels('b2', { tags: [], groups: ['site-b'] });

    expect(identity.select({})).toEqual(['a1', 'a2', 'b1', 'b2']);
    expect(identity.select({ groups: ['site-a'] })).toEqual(['a1', 'a2']);
    expect(identity.select({ groups: ['canary', 'site-b'] })).toEqual(['a2', 'b1', 'b2']);
    expect(identity.select({ tags: ['outdoor', 'night'] })).toEqual(['a1', 'b1']);
    expect(identity.select({ tags: ['outdoor'], groups: ['site-b'] })).toEqual(['b1']);
    expect(identity.select({ ids: ['a2', 'b2', 'nobody'], tags: ['outdoor'] })).toEqual(['a2']);
    expect(identity.select({ groups: [] })).toEqual([]);
    expect(identity.select({ tags: [] })).toEqual(['a1', 'a2', 'b1', 'b2']);

    // Replaced, not merged.
    expect(identity.setLabels('a1', { tags: ['indoor'], groups: [] })).toEqual({ tags: ['indoor'], groups: [] });
    expect(identity.select({ groups: ['site-a'] })).toEqual(['a2']);

    await identity.revoke('b1');
    expect(identity.select({ tags: ['outdoor'] })).toEqual(['a2']);
    expect(() => identity.setLabels('a1', { tags: ['no spaces'], groups: [] })).toThrow(/tags\.0/);
  });
});
