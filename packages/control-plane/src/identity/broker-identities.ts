import type { WantedIdentities } from '../broker/mosquitto-reconcile.js';
import { DEFAULT_CLAIM_TOKEN_ID, type DeviceIdentityService } from './device-identity-service.js';

/**
 * What an external broker should let in, by the database: devices holding
 * credentials, claim tokens that may still claim (not revoked, not
 * expired; a used-up one may still answer a lost claim again), and the
 * default claim token's plaintext, the one token the control plane has at
 * every start.
 */
export function wantedBrokerIdentities(identity: Pick<DeviceIdentityService, 'devicesWithCredentials' | 'claimTokens'>, defaultClaimToken: string, now = Date.now()): WantedIdentities {
  const live = identity.claimTokens().filter((t) => t.revokedAt === null && (t.expiresAt === null || t.expiresAt > now));
  return {
    devices: identity.devicesWithCredentials(),
    claimTokens: live.map((t) => t.tokenSha256),
    known: live.some((t) => t.id === DEFAULT_CLAIM_TOKEN_ID) ? [{ token: defaultClaimToken, name: 'default' }] : [],
  };
}
