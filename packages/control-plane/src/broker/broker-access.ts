import { timingSafeEqual, createHash } from 'node:crypto';
import { deviceIdSchema, parseDeviceTopic } from '@perch/shared';

/**
 * Who may connect to the broker and what each may publish and subscribe.
 * Devices authenticate with their device id as client id and username and
 * the fleet's device token; a device may only publish its own device-to-cloud
 * topics and subscribe its own cloud-to-device ones. The control plane has
 * its own identity and may do anything. (Per-device credentials and claim
 * tokens come with fleet provisioning.)
 */
export interface BrokerAccessOptions {
  controlPlaneUsername: string;
  controlPlanePassword: string;
  deviceToken: string;
}

export type Principal = { kind: 'control-plane' } | { kind: 'device'; deviceId: string };

function sameSecret(a: string | Buffer, b: string): boolean {
  // Hash both so the comparison is constant-time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class BrokerAccess {
  constructor(private readonly opts: BrokerAccessOptions) {}

  authenticate(clientId: string, username: string | undefined, password: Buffer | undefined): Principal | null {
    if (username === undefined || password === undefined) return null;
    if (username === this.opts.controlPlaneUsername) {
      return sameSecret(password, this.opts.controlPlanePassword) ? { kind: 'control-plane' } : null;
    }
    if (username !== clientId || !deviceIdSchema.safeParse(clientId).success) return null;
    return sameSecret(password, this.opts.deviceToken) ? { kind: 'device', deviceId: clientId } : null;
  }

  mayPublish(who: Principal, topic: string): boolean {
    if (who.kind === 'control-plane') return true;
    const t = parseDeviceTopic(topic);
    return t !== null && t.deviceId === who.deviceId && t.direction === 'from-device';
  }

  maySubscribe(who: Principal, filter: string): boolean {
    if (who.kind === 'control-plane') return true;
    // Exact topics only: a device never needs wildcards.
    const t = parseDeviceTopic(filter);
    return t !== null && t.deviceId === who.deviceId && t.direction === 'to-device';
  }
}
