import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateSigningKey, signingKeyFromPem, signingKeyToPem, type PublicKey, type SigningKey } from '@perch/shared';

/**
 * The registry's Ed25519 signing key, created on first start. It signs model
 * targets and desired states. Root keys kept offline, rotation and separate
 * online roles come with trusted delivery; the envelope format already allows them.
 */
export function loadOrCreateSigningKey(file: string): SigningKey {
  if (existsSync(file)) return signingKeyFromPem(readFileSync(file, 'utf8'));
  const key = generateSigningKey();
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, signingKeyToPem(key), { mode: 0o600, flag: 'wx' });
  return key;
}

/** What devices must trust, as the JSON array the agent's `trust.keysFile` reads. */
export function trustedKeysDocument(keys: readonly SigningKey[]): PublicKey[] {
  return keys.map((k) => k.publicKey);
}
