import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';

/**
 * A secret sealed to one recipient: the sender's ephemeral X25519 key with
 * the recipient's, HKDF-SHA256, then AES-256-GCM. A claimant sends a fresh
 * public key with its claim and the control plane seals the device's new
 * password to it, so another client that can read the answer (a broker that
 * cannot hold claimants to their own topics) learns nothing usable.
 */
export const SEALING_ALGORITHM = 'x25519-hkdf-sha256-aes-256-gcm';

/** A raw 32-byte X25519 public key, base64url. */
export const sealingPublicKeySchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'an X25519 public key: 32 bytes, base64url');

export const sealedSecretSchema = z.object({
  alg: z.literal(SEALING_ALGORITHM),
  /** the sender's ephemeral public key */
  publicKey: sealingPublicKeySchema,
  /** 12 bytes, base64url */
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16}$/, 'a 12-byte nonce, base64url'),
  /** the ciphertext with its 16-byte tag appended, base64url */
  ciphertext: z.string().regex(/^[A-Za-z0-9_-]{22,1400}$/, 'base64url ciphertext'),
});
export type SealedSecret = z.infer<typeof sealedSecretSchema>;

export interface SealingKeyPair {
  /** to send: raw, base64url */
  publicKey: string;
  /** kept in memory, used once */
  privateKey: KeyObject;
}

export function sealingKeyPair(): SealingKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { publicKey: rawPublicKey(publicKey), privateKey };
}

function rawPublicKey(key: KeyObject): string {
  const { x } = key.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new Error('not an X25519 public key');
  return x;
}

/** The AES key, bound to what the secret is for: a sealed answer cannot be replayed as another. */
function aesKey(ownPrivate: KeyObject, otherPublic: string, context: string): Buffer {
  const shared = diffieHellman({ privateKey: ownPrivate, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: otherPublic }, format: 'jwk' }) });
  return Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), `perch sealed secret v1\0${context}`, 32));
}

/** Seals `secret` to the holder of `recipientPublicKey`; `context` must be the same when it is opened. */
export function sealSecret(secret: string, recipientPublicKey: string, context: string): SealedSecret {
  const own = generateKeyPairSync('x25519');
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', aesKey(own.privateKey, recipientPublicKey, context), nonce);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return { alg: SEALING_ALGORITHM, publicKey: rawPublicKey(own.publicKey), nonce: nonce.toString('base64url'), ciphertext: ciphertext.toString('base64url') };
}

/** Opens a sealed secret; throws when it was sealed to another key, for another context, or altered. */
export function openSecret(sealed: SealedSecret, privateKey: KeyObject, context: string): string {
  const bytes = Buffer.from(sealed.ciphertext, 'base64url');
  if (bytes.length < 17) throw new Error('sealed secret too short');
  const decipher = createDecipheriv('aes-256-gcm', aesKey(privateKey, sealed.publicKey, context), Buffer.from(sealed.nonce, 'base64url'));
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    throw new Error('sealed secret does not open with this key and context');
  }
}
