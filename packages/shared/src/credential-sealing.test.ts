import { describe, expect, it } from 'vitest';
import { openSecret, sealedSecretSchema, sealingKeyPair, sealSecret } from './credential-sealing.js';

describe('sealed secrets', () => {
  it('opens only with the recipient\'s key and the same context, and not once altered', () => {
    const recipient = sealingKeyPair();
    const sealed = sealSecret('the device password', recipient.publicKey, 'box-1/r1');
    expect(sealedSecretSchema.parse(sealed)).toEqual(sealed);
    expect(JSON.stringify(sealed)).not.toContain('the device password');
    expect(openSecret(sealed, recipient.privateKey, 'box-1/r1')).toBe('the device password');

    // Each seal uses a fresh key and nonce.
    expect(sealSecret('the device password', recipient.publicKey, 'box-1/r1').ciphertext).not.toBe(sealed.ciphertext);
    expect(() => openSecret(sealed, sealingKeyPair().privateKey, 'box-1/r1')).toThrow(/does not open/);
    expect(() => openSecret(sealed, recipient.privateKey, 'box-2/r1')).toThrow(/does not open/);
    const bytes = Buffer.from(sealed.ciphertext, 'base64url');
    bytes.writeUInt8((bytes.readUInt8(0) ^ 1) & 0xff, 0);
    expect(() => openSecret({ ...sealed, ciphertext: bytes.toString('base64url') }, recipient.privateKey, 'box-1/r1')).toThrow(/does not open/);
  });
});
