import { createHash } from 'node:crypto';
import { z } from 'zod';
import { sealedSecretSchema, sealingPublicKeySchema } from './credential-sealing.js';
import { deviceIdSchema } from './topics.js';

/**
 * Fleet provisioning over MQTT. A box with no credentials of its own connects
 * with client id = its device id, username = `claimantUsername(token)` and
 * the claim token as password; the broker lets such a claimant publish only its `provision/request` and
 * subscribe only its `provision/response`. The control plane checks the
 * token, issues the device its own secret and answers once, the secret
 * sealed to a key the claimant made for this claim (credential-sealing.ts),
 * so a broker that cannot confine claimants leaks nothing usable. The token
 * is in the request as well as in the CONNECT, so a control plane behind an
 * external broker, which never sees the CONNECT, checks it all the same.
 */
export const claimTokenSchema = z.string().min(16, 'a claim token has at least 16 characters').max(256);

export const CLAIMANT_USERNAME_PREFIX = 'perch.claim.';

const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256');

/**
 * A claimant's MQTT username, from its claim token's SHA-256 (hex). An
 * external broker (Mosquitto's dynamic security) must know every login
 * beforehand and the control plane keeps only the token's hash, so the
 * username is derived from it; 128 bits name a token without collisions.
 * Dots never occur in device ids, so no device can have this username.
 */
export function claimantUsernameOf(tokenSha256: string): string {
  return `${CLAIMANT_USERNAME_PREFIX}${sha256HexSchema.parse(tokenSha256).slice(0, 32)}`;
}

/** The username a box holding `claimToken` claims with, on any broker. */
export function claimantUsername(claimToken: string): string {
  return claimantUsernameOf(createHash('sha256').update(claimToken).digest('hex'));
}

export const provisionRequestSchema = z.object({
  requestId: z.string().min(1).max(64),
  deviceId: deviceIdSchema,
  claimToken: claimTokenSchema,
  /** the claimant's X25519 public key for this claim: the answer's password is sealed to it */
  publicKey: sealingPublicKeySchema,
  agentVersion: z.string().max(64).optional(),
});
export type ProvisionRequest = z.infer<typeof provisionRequestSchema>;

/** What a sealed password is bound to: this device and this request. */
export function provisionSealingContext(deviceId: string, requestId: string): string {
  return `provision-response\0${deviceId}\0${requestId}`;
}

/** Why a claim was refused; the response's `reason` says it in words. */
export const PROVISION_REFUSALS = [
  'claim-token-unknown',
  'claim-token-revoked',
  'claim-token-expired',
  'claim-token-used-up',
  /** the id already has credentials that were used (an operator revokes or forgets them first) */
  'device-has-credentials',
  'device-revoked',
  /** the request's public key cannot be sealed to (e.g. a low-order X25519 point): nothing was issued or counted */
  'public-key-unusable',
] as const;
export type ProvisionRefusal = (typeof PROVISION_REFUSALS)[number];

const answer = { requestId: z.string().min(1).max(64), deviceId: deviceIdSchema };

export const provisionResponseSchema = z.discriminatedUnion('status', [
  z.object({
    ...answer,
    status: z.literal('issued'),
    /** the MQTT username: the device id */
    username: deviceIdSchema,
    /** the device's own secret, sealed to the request's public key; sent this once, the control plane keeps only its SHA-256 */
    password: sealedSecretSchema,
    issuedAt: z.number().int().nonnegative(),
  }),
  z.object({
    ...answer,
    status: z.literal('refused'),
    code: z.enum(PROVISION_REFUSALS),
    reason: z.string().min(1).max(1000),
  }),
]);
export type ProvisionResponse = z.infer<typeof provisionResponseSchema>;
