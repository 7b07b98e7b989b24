import { timingSafeEqual, createHash } from 'node:crypto';
import { CLAIMANT_USERNAME_PREFIX, claimantUsername, deviceIdSchema, isProvisionTopicKind, parseDeviceTopic } from '@perch/shared';

/**
 * Who may connect to the broker and what each may publish and subscribe.
 * Devices connect with their device id as client id. With username = device
 * id and their own secret they are a *device*: they may publish their own
 * device-to-cloud topics and subscribe their own cloud-to-device ones. With a
 * claim token they are a *claimant*: only their own `provision/request` and
 * `provision/response`. A claimant's username is `claimantUsername(token)`,
 * the form an external broker needs, so an agent claims the same way on
 * both; the device id as username is still taken from older agents. The control plane has its own identity and may do
 * anything. Which secret proves what is the device authenticator's business
 * (the control plane's identity service); the topic rules are here.
 */
export type Principal =
  | { kind: 'control-plane' }
  | { kind: 'device'; deviceId: string }
  | { kind: 'claimant'; deviceId: string; claimTokenId: string };

export type DevicePrincipal = Exclude<Principal, { kind: 'control-plane' }>;

export type DeviceAuthentication = { ok: true; principal: DevicePrincipal } | { ok: false; reason: string };

export interface DeviceAuthenticator {
  /** What a device id with this secret is; the reason of a refusal goes to the control plane's log only. */
  authenticateDevice(deviceId: string, secret: Buffer): DeviceAuthentication;
}

export interface BrokerAccessOptions {
  controlPlaneUsername: string;
  controlPlanePassword: string;
  devices: DeviceAuthenticator;
}

/** 4: bad username or password; 5: not authorised (MQTT 3.1.1 CONNACK). */
export type Admission = { ok: true; principal: Principal } | { ok: false; reason: string; returnCode: 4 | 5 };

function sameSecret(a: string | Buffer, b: string): boolean {
  // Hash both so the comparison is constant-time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class BrokerAccess {
  constructor(private readonly opts: BrokerAccessOptions) {}

  /** `isConnected` says whether a client with this id holds a session now. */
  authenticate(clientId: string, username: string | undefined, password: Buffer | undefined, isConnected: (clientId: string) => boolean): Admission {
    const refuse = (reason: string, returnCode: 4 | 5 = 4): Admission => ({ ok: false, reason, returnCode });
    if (username === undefined || password === undefined) return refuse('no username or password');
    if (username === this.opts.controlPlaneUsername) {
      return sameSecret(password, this.opts.controlPlanePassword) ? { ok: true, principal: { kind: 'control-plane' } } : refuse('wrong control plane secret');
    }
    const asClaimant = username.startsWith(CLAIMANT_USERNAME_PREFIX);
    if (asClaimant) {
      if (username !== claimantUsername(password.toString('utf8'))) return refuse('the password is not the claim token this username names');
    } else if (username !== clientId) {
      return refuse('the username is not the client id');
    }
    if (!deviceIdSchema.safeParse(clientId).success) return refuse('the client id is not a device id');
    const auth = this.opts.devices.authenticateDevice(clientId, password);
    if (!auth.ok) return refuse(auth.reason);
    // A device's own secret behind a claimant's username is not a claim.
    if (asClaimant && auth.principal.kind !== 'claimant') return refuse('not a claim token');
    // A claimant taking over a live session would cut that device off and wipe its subscriptions.
    if (auth.principal.kind === 'claimant' && isConnected(clientId)) return refuse('a claim for a device id that is connected now', 5);
    return { ok: true, principal: auth.principal };
  }

  mayPublish(who: Principal, topic: string): boolean {
    if (who.kind === 'control-plane') return true;
    const t = parseDeviceTopic(topic);
    if (t === null || t.deviceId !== who.deviceId || t.direction !== 'from-device') return false;
    return who.kind === 'claimant' ? t.kind === 'provision/request' : !isProvisionTopicKind(t.kind);
  }

  maySubscribe(who: Principal, filter: string): boolean {
    if (who.kind === 'control-plane') return true;
    // Exact topics only: a device never needs wildcards.
    const t = parseDeviceTopic(filter);
    if (t === null || t.deviceId !== who.deviceId || t.direction !== 'to-device') return false;
    return who.kind === 'claimant' ? t.kind === 'provision/response' : !isProvisionTopicKind(t.kind);
  }
}
