import { describe, expect, it } from 'vitest';
import { generateSigningKey, isExpired, keyIdOf, signEnvelope, signingKeyFromPem, signingKeyToPem, verifyEnvelope } from './signed-envelope.js';

describe('signed envelopes', () => {
  const key = generateSigningKey();
  const other = generateSigningKey();
  const doc = { _type: 'desired-state', generation: 3, nested: { b: 2, a: [1, 'x'] } };

  it('verifies a signature by a trusted key, whatever the key order of the document', () => {
    const env = signEnvelope(doc, [key]);
    expect(verifyEnvelope(env, [key.publicKey])).toEqual({ ok: true, keyids: [key.keyid] });
    const reordered = { signed: { nested: { a: [1, 'x'], b: 2 }, generation: 3, _type: 'desired-state' }, signatures: env.signatures };
    expect(verifyEnvelope(reordered, [key.publicKey]).ok).toBe(true);
  });

  it('refuses tampered documents, unknown keys and unmet thresholds', () => {
    const env = signEnvelope(doc, [key]);
    const tampered = { ...env, signed: { ...doc, generation: 4 } };
    const r1 = verifyEnvelope(tampered, [key.publicKey]);
    expect(r1).toEqual({ ok: false, error: expect.stringMatching(/1 invalid/) });
    const r2 = verifyEnvelope(env, [other.publicKey]);
    expect(r2).toEqual({ ok: false, error: expect.stringMatching(/1 by unknown keys/) });
    const both = signEnvelope(doc, [key, other]);
    expect(verifyEnvelope(both, [key.publicKey, other.publicKey], 2).ok).toBe(true);
    expect(verifyEnvelope(env, [key.publicKey, other.publicKey], 2).ok).toBe(false);
    // The same key twice counts once toward a threshold.
    const dup = { signed: env.signed, signatures: [...env.signatures, ...env.signatures] };
    expect(verifyEnvelope(dup, [key.publicKey], 2).ok).toBe(false);
  });

  it('round-trips keys through PEM and derives stable key ids', () => {
    const again = signingKeyFromPem(signingKeyToPem(key));
    expect(again.keyid).toBe(key.keyid);
    expect(keyIdOf(key.publicKey)).toBe(key.keyid);
    expect(key.keyid).toMatch(/^[0-9a-f]{64}$/);
  });

  it('tells expired metadata', () => {
    expect(isExpired('2000-01-01T00:00:00Z')).toBe(true);
    expect(isExpired(new Date(Date.now() + 60_000).toISOString())).toBe(false);
  });
});
