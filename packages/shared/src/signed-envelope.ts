import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { z } from 'zod';

/**
 * Perch's own signed documents (desired states) in The Update Framework's
 * envelope shape: `{ signed: {...}, signatures: [{ keyid, sig }] }`,
 * signatures over the canonical JSON of `signed`, keys described as TUF
 * describes them and identified by the sha256 of their canonical form — so
 * the keys of TUF root's `desired` role check them as they are.
 */
const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `${bytes}-byte lowercase hex`);

export const publicKeySchema = z.object({
  keytype: z.literal('ed25519'),
  scheme: z.literal('ed25519'),
  keyval: z.object({ public: hex(32) }),
});
export type PublicKey = z.infer<typeof publicKeySchema>;

export const signatureSchema = z.object({ keyid: hex(32), sig: hex(64) });
export type Signature = z.infer<typeof signatureSchema>;

/** Fields every signed document carries, as TUF's common role fields do. */
export const signedCommonShape = {
  spec_version: z.literal('1.0'),
  /** metadata version: a monotonic counter, the base of rollback protection */
  version: z.number().int().positive(),
  /** ISO 8601 time after which the document must not be trusted (freeze protection) */
  expires: z.string().datetime({ offset: true }),
};

export function envelopeSchema<S extends z.ZodType>(signed: S) {
  return z.object({ signed, signatures: z.array(signatureSchema).min(1).max(16) });
}
export interface Envelope<T> {
  signed: T;
  signatures: Signature[];
}

export interface SigningKey {
  keyid: string;
  publicKey: PublicKey;
  privateKey: KeyObject;
}

export function keyIdOf(key: PublicKey): string {
  return createHash('sha256').update(canonicalJson(key)).digest('hex');
}

function publicKeyOf(object: KeyObject): PublicKey {
  const jwk = object.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 key');
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: Buffer.from(jwk.x, 'base64url').toString('hex') } };
}

function signingKeyFrom(privateKey: KeyObject): SigningKey {
  const publicKey = publicKeyOf(createPublicKey(privateKey));
  return { keyid: keyIdOf(publicKey), publicKey, privateKey };
}

export function generateSigningKey(): SigningKey {
  return signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
}

export function signingKeyFromPem(pem: string): SigningKey {
  return signingKeyFrom(createPrivateKey(pem));
}

export function signingKeyToPem(key: SigningKey): string {
  return key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

function nodePublicKey(key: PublicKey): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.keyval.public, 'hex').toString('base64url') },
    format: 'jwk',
  });
}

export function signEnvelope<T>(signed: T, keys: SigningKey[]): Envelope<T> {
  if (keys.length === 0) throw new Error('signEnvelope needs at least one key');
  const bytes = Buffer.from(canonicalJson(signed), 'utf8');
  return {
    signed,
    signatures: keys.map((k) => ({ keyid: k.keyid, sig: sign(null, bytes, k.privateKey).toString('hex') })),
  };
}

export type VerifyResult = { ok: true; keyids: string[] } | { ok: false; error: string };

/**
 * Verifies that at least `threshold` distinct trusted keys signed the
 * envelope. Signatures by unknown keys are ignored, as TUF does; a bad
 * signature by a trusted key is not counted.
 */
export function verifyEnvelope(envelope: Envelope<unknown>, trusted: readonly PublicKey[], threshold = 1): VerifyResult {
  const byId = new Map(trusted.map((k) => [keyIdOf(k), k]));
  const bytes = Buffer.from(canonicalJson(envelope.signed), 'utf8');
  const good = new Set<string>();
  let unknown = 0;
  let bad = 0;
  for (const s of envelope.signatures) {
    const key = byId.get(s.keyid);
    if (!key) {
      unknown++;
      continue;
    }
    if (verify(null, bytes, nodePublicKey(key), Buffer.from(s.sig, 'hex'))) good.add(s.keyid);
    else bad++;
  }
  if (good.size >= threshold) return { ok: true, keyids: [...good] };
  const parts = [`${good.size} of ${threshold} required trusted signatures`];
  if (unknown > 0) parts.push(`${unknown} by unknown keys`);
  if (bad > 0) parts.push(`${bad} invalid`);
  return { ok: false, error: `signature check failed: ${parts.join(', ')}` };
}

export function isExpired(expires: string, now: Date = new Date()): boolean {
  return Date.parse(expires) <= now.getTime();
}
