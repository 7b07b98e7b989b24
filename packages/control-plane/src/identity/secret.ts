import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Device secrets and claim tokens: 256 random bits from the control plane,
 * stored only as their SHA-256. A KDF (scrypt, argon2) protects guessable
 * human passwords; these cannot be guessed, so a plain hash is as strong and
 * verifying one costs microseconds, not the tens of milliseconds a KDF
 * spends on each of ten thousand reconnecting devices.
 */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function sha256Hex(secret: string | Buffer): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Whether `secret` hashes to `storedHex`, in constant time. */
export function secretMatches(secret: string | Buffer, storedHex: string): boolean {
  const given = createHash('sha256').update(secret).digest();
  const stored = Buffer.from(storedHex, 'hex');
  return stored.length === given.length && timingSafeEqual(given, stored);
}
