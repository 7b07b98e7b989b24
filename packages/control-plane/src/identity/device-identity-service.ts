import { randomBytes } from 'node:crypto';
import { deviceIdSchema, type ProvisionRefusal } from '@perch/shared';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { DeviceAuthentication, DeviceAuthenticator } from '../broker/broker-access.js';
import type { ExternalBrokerAccess } from '../broker/mosquitto-broker-access.js';
import { ClaimTokenStore, type ClaimTokenRecord } from '../store/claim-token-store.js';
import { writeTransaction, type Db } from '../store/database.js';
import { DeviceIdentityStore, type DeviceCredentialRecord, type Revocation } from '../store/device-identity-store.js';
import { DeviceLabelStore, type DeviceLabels, type DeviceSelector } from '../store/device-label-store.js';
import type { DeviceStore } from '../store/device-store.js';
import { labelListSchema } from './device-labels.js';
import { newSecret, secretMatches, sha256Hex } from './secret.js';

/** The claim token the control plane makes on its first start (`devices.claimToken`), under this id. */
export const DEFAULT_CLAIM_TOKEN_ID = 'default';

export const labelsInputSchema = z.object({ tags: labelListSchema.optional(), groups: labelListSchema.optional() });
export type LabelsInput = z.input<typeof labelsInputSchema>;

export const claimTokenSpecSchema = z.object({
  name: z.string().trim().min(1).max(128),
  /** null: unlimited */
  maxUses: z.number().int().positive().nullable().default(null),
  /** ms since epoch; null: never */
  expiresAt: z.number().int().positive().nullable().default(null),
  tags: labelListSchema.default([]),
  groups: labelListSchema.default([]),
});
export type ClaimTokenSpec = z.input<typeof claimTokenSpecSchema>;

export interface IssuedCredentials {
  deviceId: string;
  /** the MQTT username (and client id): the device id */
  username: string;
  /** shown this once; only its SHA-256 is kept */
  password: string;
  issuedAt: number;
}

/** A claim's outcome; the provision handler seals the password into the answer. */
export type ClaimResult = ({ status: 'issued' } & IssuedCredentials) | { status: 'refused'; code: ProvisionRefusal; reason: string };

export interface DeviceIdentity {
  deviceId: string;
  revoked: Revocation | null;
  credentials: Omit<DeviceCredentialRecord, 'deviceId' | 'secretSha256'> | null;
  tags: string[];
  groups: string[];
}

export interface DeviceIdentityOptions {
  /** ends a device's live MQTT session now (the embedded broker's `disconnectClient`); true when it had one */
  endSession?: (deviceId: string) => Promise<boolean>;
  /**
   * An external broker, which cannot ask at CONNECT as the embedded one does,
   * so it is told every credential and claim token as it is issued or
   * withdrawn, before the secret is handed to anyone. Its own calls end
   * the sessions concerned. With it, credentials are issued only by the
   * async `issueCredentials` and `claimCredentials`.
   */
  broker?: ExternalBrokerAccess;
  now?: () => number;
}

export class IdentityError extends Error {
  constructor(
    readonly code: 'unknown_device' | 'unknown_claim_token' | 'invalid_request',
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'IdentityError';
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Device identity: per-device credentials (issued by an operator or claimed
 * with a claim token), revocation, and tags and groups. It answers the
 * broker's question of who a connecting device is, and a claimant's
 * `provision/request`.
 */
export class DeviceIdentityService implements DeviceAuthenticator {
  private readonly identities: DeviceIdentityStore;
  private readonly tokens: ClaimTokenStore;
  private readonly labelStore: DeviceLabelStore;
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    private readonly devices: DeviceStore,
    private readonly log: Logger,
    private readonly opts: DeviceIdentityOptions = {},
  ) {
    this.identities = new DeviceIdentityStore(db);
    this.tokens = new ClaimTokenStore(db);
    this.labelStore = new DeviceLabelStore(db);
    this.now = opts.now ?? Date.now;
  }

  authenticateDevice(deviceId: string, secret: Buffer): DeviceAuthentication {
    const credential = this.identities.credential(deviceId);
    if (credential && secretMatches(secret, credential.secretSha256)) {
      // Revocation deletes the credential too; this is the second lock on the same door.
      if (this.identities.revocation(deviceId)) return { ok: false, reason: 'the device is revoked' };
      if (credential.usedAt === null) this.identities.markUsed(deviceId, this.now());
      return { ok: true, principal: { kind: 'device', deviceId } };
    }
    const token = this.tokens.byHash(sha256Hex(secret));
    // Any known token makes a claimant: whether it may still claim is answered, with the reason, on provision/response.
    if (token) return { ok: true, principal: { kind: 'claimant', deviceId, claimTokenId: token.id } };
    return { ok: false, reason: credential ? 'wrong secret for this device' : 'no credentials for this device id' };
  }

  /**
   * Operator provisioning: fresh credentials replacing any old ones (and a
   * revocation), labels added. Synchronous, for the embedded broker, which
   * asks at CONNECT; with an external one use `issueCredentials`.
   */
  provision(deviceId: string, labels: LabelsInput = {}): IssuedCredentials {
    if (this.opts.broker) throw new Error('with an external broker, credentials are issued with issueCredentials() (ControlPlane.issueDeviceCredentials), which waits until the broker has them');
    const { issued, replaced } = this.storeCredentials(deviceId, labels);
    // A session on the old credentials must not outlive them.
    if (replaced) void this.endSession(issued.deviceId);
    return issued;
  }

  /** As `provision`, and resolves once the broker accepts the new password (an external broker is told it first; the old one stops working there). */
  async issueCredentials(deviceId: string, labels: LabelsInput = {}): Promise<IssuedCredentials> {
    const broker = this.opts.broker;
    if (!broker) return this.provision(deviceId, labels);
    const { issued } = this.storeCredentials(deviceId, labels);
    // After the store: were the broker to fail, the old password keeps working there and the operator asks again.
    await broker.addDevice(issued.deviceId, issued.password);
    return issued;
  }

  private storeCredentials(deviceId: string, labels: LabelsInput): { issued: IssuedCredentials; replaced: boolean } {
    const id = this.deviceId(deviceId);
    const add = this.parse(labelsInputSchema, labels);
    const password = newSecret();
    const issuedAt = this.now();
    const replaced = writeTransaction(this.db, () => {
      this.devices.ensure(id, issuedAt);
      const had = this.identities.credential(id) !== null;
      this.identities.readmit(id);
      this.identities.putCredential({ deviceId: id, secretSha256: sha256Hex(password), issuedAt, claimTokenId: null });
      this.labelStore.add(id, add);
      return had;
    })();
    this.log.info({ deviceId: id, replaced }, 'device credentials issued');
    return { issued: { deviceId: id, username: id, password, issuedAt }, replaced };
  }

  /** Drops the device's credentials without revoking it, so the box may claim again (e.g. after it was re-imaged). */
  async forgetCredentials(deviceId: string): Promise<boolean> {
    const id = this.knownDevice(deviceId);
    const had = this.identities.deleteCredential(id);
    await this.opts.broker?.revokeDevice(id);
    await this.endSession(id);
    this.log.info({ deviceId: id, had }, 'device credentials forgotten');
    return had;
  }

  /** Keeps a device out: revoked, its credentials deleted, its live session ended, claims for its id refused. */
  async revoke(deviceId: string, reason: string | null = null): Promise<{ deviceId: string; revokedAt: number; reason: string | null; disconnected: boolean }> {
    const id = this.knownDevice(deviceId);
    const at = this.now();
    writeTransaction(this.db, () => {
      this.identities.revoke(id, reason, at);
      this.identities.deleteCredential(id);
    })();
    // The broker's own revocation closes a live session; whether there was one it does not say.
    await this.opts.broker?.revokeDevice(id);
    const disconnected = await this.endSession(id);
    this.log.warn({ deviceId: id, reason, disconnected }, 'device revoked');
    return { deviceId: id, revokedAt: at, reason, disconnected };
  }

  /**
   * Answers a claim. Credentials are issued when the token is known, not
   * revoked, not expired and has uses left, and the device id is not revoked
   * and has no credentials that were used. Claimed credentials never used
   * may be claimed again, without counting another use of the same token:
   * a box that lost the answer (power cut) must not be locked out.
   */
  claim(deviceId: string, claimToken: string, agentVersion?: string): ClaimResult {
    const now = this.now();
    const result = writeTransaction(this.db, (): ClaimResult => {
      const refuse = (code: ProvisionRefusal, reason: string): ClaimResult => ({ status: 'refused', code, reason });
      const token = this.tokens.byHash(sha256Hex(claimToken));
      if (!token) return refuse('claim-token-unknown', 'the claim token is not known to this control plane');
      const named = `claim token ${token.name} (${token.id})`;
      if (token.revokedAt !== null) return refuse('claim-token-revoked', `${named} was revoked at ${iso(token.revokedAt)}`);
      if (token.expiresAt !== null && token.expiresAt <= now) return refuse('claim-token-expired', `${named} expired at ${iso(token.expiresAt)}`);
      const revoked = this.identities.revocation(deviceId);
      if (revoked) {
        return refuse('device-revoked', `device ${deviceId} was revoked at ${iso(revoked.at)}${revoked.reason ? ` (${revoked.reason})` : ''}; an operator re-admits it by issuing it credentials`);
      }
      const existing = this.identities.credential(deviceId);
      if (existing && (existing.claimTokenId === null || existing.usedAt !== null)) {
        return refuse(
          'device-has-credentials',
          `device ${deviceId} already has credentials (issued at ${iso(existing.issuedAt)}); an operator forgets them (DELETE /api/v1/devices/${deviceId}/credentials) before the box may claim again`,
        );
      }
      const again = existing?.claimTokenId === token.id;
      if (!again && !this.tokens.use(token.id, now)) return refuse('claim-token-used-up', `${named} has been used ${token.uses} of ${token.maxUses ?? 'unlimited'} times`);
      const password = newSecret();
      this.devices.ensure(deviceId, now);
      this.identities.putCredential({ deviceId, secretSha256: sha256Hex(password), issuedAt: now, claimTokenId: token.id });
      this.labelStore.add(deviceId, { tags: token.tags, groups: token.groups });
      return { status: 'issued', deviceId, username: deviceId, password, issuedAt: now };
    })();
    if (result.status === 'refused') this.log.warn({ deviceId, code: result.code, reason: result.reason }, 'claim refused');
    else this.log.info({ deviceId, agentVersion }, 'device claimed its credentials');
    return result;
  }

  /**
   * As `claim`, and resolves once an external broker accepts the issued
   * password, so the answer never names credentials the broker would
   * refuse. When the broker fails it rejects and nothing is answered: the
   * box asks again and, the credentials being unused, gets fresh ones
   * without another use of its token.
   */
  async claimCredentials(deviceId: string, claimToken: string, agentVersion?: string): Promise<ClaimResult> {
    const result = this.claim(deviceId, claimToken, agentVersion);
    if (result.status === 'issued') await this.opts.broker?.addDevice(result.deviceId, result.password);
    return result;
  }

  /** A new claim token, shown this once; an external broker is given it before it is returned (the only time its plaintext exists). */
  async createClaimToken(spec: ClaimTokenSpec): Promise<{ token: string; record: ClaimTokenRecord }> {
    const s = this.parse(claimTokenSpecSchema, spec);
    const now = this.now();
    if (s.expiresAt !== null && s.expiresAt <= now) throw new IdentityError('invalid_request', 'expiresAt is not in the future', 'expiresAt');
    const token = newSecret();
    const id = `ct-${randomBytes(6).toString('hex')}`;
    this.tokens.insert({ id, name: s.name, tokenSha256: sha256Hex(token), maxUses: s.maxUses, expiresAt: s.expiresAt, tags: s.tags, groups: s.groups, createdAt: now });
    try {
      await this.opts.broker?.addClaimToken(token, { name: s.name });
    } catch (err) {
      // Never shown, so never usable: withdrawn rather than left half made.
      this.tokens.revoke(id, this.now());
      throw err;
    }
    this.log.info({ id, name: s.name, maxUses: s.maxUses, expiresAt: s.expiresAt }, 'claim token created');
    return { token, record: this.tokens.get(id) as ClaimTokenRecord };
  }

  /**
   * The default claim token: created under its fixed id when missing, and
   * given the configured secret when that changed. An operator's revocation
   * of the same secret stands across restarts.
   */
  ensureDefaultClaimToken(token: string): void {
    const hash = sha256Hex(token);
    const existing = this.tokens.get(DEFAULT_CLAIM_TOKEN_ID);
    if (!existing) {
      this.tokens.insert({ id: DEFAULT_CLAIM_TOKEN_ID, name: 'default', tokenSha256: hash, maxUses: null, expiresAt: null, tags: [], groups: [], createdAt: this.now() });
    } else if (existing.tokenSha256 !== hash) {
      this.tokens.rehash(DEFAULT_CLAIM_TOKEN_ID, hash);
    }
  }

  /** Every device id that holds credentials now: what an external broker should let in. */
  devicesWithCredentials(): string[] {
    return this.identities.deviceIdsWithCredentials();
  }

  claimTokens(): ClaimTokenRecord[] {
    return this.tokens.list();
  }

  /** Revoked, and removed from an external broker, which disconnects every claimant using it. */
  async revokeClaimToken(id: string): Promise<ClaimTokenRecord> {
    const token = this.tokens.get(id);
    if (!token) throw new IdentityError('unknown_claim_token', `no claim token ${id}`, 'id');
    if (this.tokens.revoke(id, this.now())) this.log.warn({ id }, 'claim token revoked');
    // Also when revoked before: an earlier removal may have failed.
    await this.opts.broker?.removeClaimToken(token.tokenSha256);
    return this.tokens.get(id) as ClaimTokenRecord;
  }

  /** Replaces the device's tags and groups; a device not seen yet gets them when it first connects. */
  setLabels(deviceId: string, labels: { tags: string[]; groups: string[] }): DeviceLabels {
    const id = this.deviceId(deviceId);
    const parsed = this.parse(labelsInputSchema, labels);
    writeTransaction(this.db, () => {
      this.devices.ensure(id, this.now());
      this.labelStore.replace(id, { tags: parsed.tags ?? [], groups: parsed.groups ?? [] });
    })();
    return this.labelStore.get(id);
  }

  labels(deviceId: string): DeviceLabels {
    return this.labelStore.get(deviceId);
  }

  /** Ids of the devices a selector matches (revoked ones never): what rollouts aim at. */
  select(selector: DeviceSelector): string[] {
    return this.labelStore.select(selector);
  }

  identity(deviceId: string): DeviceIdentity {
    const id = this.knownDevice(deviceId);
    const c = this.identities.credential(id);
    return {
      deviceId: id,
      revoked: this.identities.revocation(id),
      credentials: c ? { issuedAt: c.issuedAt, claimTokenId: c.claimTokenId, usedAt: c.usedAt } : null,
      ...this.labelStore.get(id),
    };
  }

  private async endSession(deviceId: string): Promise<boolean> {
    return this.opts.endSession ? this.opts.endSession(deviceId) : false;
  }

  private deviceId(deviceId: string): string {
    const r = deviceIdSchema.safeParse(deviceId);
    if (!r.success) throw new IdentityError('invalid_request', `not a device id: ${r.error.issues[0]?.message ?? 'invalid'}`, 'id');
    return r.data;
  }

  private knownDevice(deviceId: string): string {
    const id = this.deviceId(deviceId);
    if (!this.devices.get(id)) throw new IdentityError('unknown_device', `no device ${id}`, 'id');
    return id;
  }

  private parse<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    const first = r.error.issues[0];
    throw new IdentityError('invalid_request', first ? `${first.path.join('.') || '(root)'}: ${first.message}` : 'invalid', first?.path.join('.') || undefined);
  }
}
