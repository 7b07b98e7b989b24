import { sign } from 'node:crypto';
import { access, readdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generateSigningKey, keyIdOf, publicKeySchema, signingKeyFromPem, signingKeyToPem, syncDir, writeFileAtomic, type PublicKey, type SigningKey } from '@perch/shared';
import { Key, Signature } from '@tufjs/models';

/**
 * Ed25519 keys of the TUF roles. A key is the shared `SigningKey` (its public
 * half is already shaped as TUF describes an ed25519 key and its id is the
 * sha256 of that description's canonical JSON), stored as a PKCS#8 PEM file
 * that only its owner may read.
 */

export const KEY_FILE_MODE = 0o600;

/** The key as root metadata lists it. */
export function tufKey(key: PublicKey): Key {
  return new Key({ keyID: keyIdOf(key), keyType: key.keytype, scheme: key.scheme, keyVal: { public: key.keyval.public } });
}

/** The public key in a root's key list, when it is an ed25519 key. */
export function publicKeyOf(key: Key): PublicKey | null {
  const parsed = publicKeySchema.safeParse(key.toJSON());
  return parsed.success ? parsed.data : null;
}

/** A signer for `Metadata.sign`: Ed25519 over the canonical JSON it is handed. */
export function tufSigner(key: SigningKey): (data: Buffer) => Signature {
  return (data) => new Signature({ keyID: key.keyid, sig: sign(null, data, key.privateKey).toString('hex') });
}

/** Writes a new key pair file; refuses to overwrite one. */
export async function createKeyFile(path: string): Promise<SigningKey> {
  const exists = await access(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new Error(`${path} already exists; a key file is never overwritten`);
  const key = generateSigningKey();
  await writeKeyFile(path, key);
  return key;
}

export async function writeKeyFile(path: string, key: SigningKey): Promise<void> {
  await writeFileAtomic(path, signingKeyToPem(key), KEY_FILE_MODE);
}

export async function readKeyFile(path: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read key file ${path}: ${(err as Error).message}`);
  }
  try {
    return signingKeyFromPem(pem);
  } catch (err) {
    throw new Error(`${path} is not an Ed25519 private key in PEM: ${(err as Error).message}`);
  }
}

/** Every key in the `.pem` files of a folder, by key id; a missing folder holds none. */
export async function readKeyDir(dir: string): Promise<Map<string, { key: SigningKey; file: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const keys = new Map<string, { key: SigningKey; file: string }>();
  for (const name of names.filter((n) => n.endsWith('.pem')).sort()) {
    const file = join(dir, name);
    const key = await readKeyFile(file);
    keys.set(key.keyid, { key, file });
  }
  return keys;
}

export async function removeKeyFile(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await syncDir(dirname(path));
}
