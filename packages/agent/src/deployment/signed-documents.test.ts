import { encodeJson, generateSigningKey, signEnvelope } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { checkDesiredState, checkModelTarget, decodeDesiredState, type ReceivedDesiredState } from './signed-documents.js';

const key = generateSigningKey();
const stranger = generateSigningKey();
const cp = new ControlPlaneDouble('mqtt://unused', key);
const model = buildTinyModel();
const target = cp.signTarget(model.bytes, model.metadata);
const ctx = { deviceId: 'gate-1', trustedKeys: [key.publicKey], acceptedGeneration: 3 };

function received(doc: unknown): ReceivedDesiredState {
  const d = decodeDesiredState(encodeJson(doc));
  if (!d.ok) throw new Error(d.error);
  return d.value;
}

describe('desired state checks', () => {
  it('accepts a state signed by a trusted key for this device', () => {
    expect(checkDesiredState(received(cp.desiredState('gate-1', 4, target)), ctx)).toEqual({ ok: true });
    expect(checkDesiredState(received(cp.desiredState('gate-1', 3, null)), ctx)).toEqual({ ok: true });
  });

  it('refuses an unknown key, another device, an expired state and an older generation, each with its reason', () => {
    const unknown = checkDesiredState(received(cp.desiredState('gate-1', 4, target, { key: stranger })), ctx);
    expect(unknown).toEqual({ ok: false, reason: 'desired state: signature check failed: 0 of 1 required trusted signatures, 1 by unknown keys' });
    expect(checkDesiredState(received(cp.desiredState('gate-2', 4, target)), ctx)).toMatchObject({ ok: false, reason: expect.stringMatching(/for device gate-2/) });
    const expired = cp.desiredState('gate-1', 4, target, { expires: '2020-01-01T00:00:00Z' });
    expect(checkDesiredState(received(expired), ctx)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(checkDesiredState(received(cp.desiredState('gate-1', 2, target)), ctx)).toMatchObject({
      ok: false,
      reason: 'replay: desired state generation 2 is older than the accepted generation 3',
    });
  });

  it('refuses a nested target that a trusted key did not sign (a mix-and-match attempt)', () => {
    const foreignTarget = cp.signTarget(model.bytes, model.metadata, { key: stranger });
    const r = checkDesiredState(received(cp.desiredState('gate-1', 4, foreignTarget)), ctx);
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^model target: signature check failed/) });
  });

  it('refuses a document altered after signing, even in a field the schema drops', () => {
    const doc = cp.desiredState('gate-1', 4, target);
    const altered = { ...doc, signed: { ...doc.signed, generation: 99 } };
    expect(checkDesiredState(received(altered), ctx)).toMatchObject({ ok: false, reason: expect.stringMatching(/1 invalid/) });
    // An extra field zod would strip: the signature is over the bytes as sent, so it no longer matches.
    const extra = { ...doc, signed: { ...doc.signed, note: 'smuggled' } };
    expect(checkDesiredState(received(extra), ctx)).toMatchObject({ ok: false });
    // ... and one signed with it verifies, because the check uses the document as received.
    const signedWithExtra = signEnvelope({ ...doc.signed, note: 'signed' }, [key]);
    expect(checkDesiredState(received(signedWithExtra), ctx)).toEqual({ ok: true });
  });

  it('rejects malformed payloads with the field at fault', () => {
    expect(decodeDesiredState(Buffer.from('{nope'))).toMatchObject({ ok: false, error: expect.stringMatching(/^malformed JSON/) });
    const r = decodeDesiredState(encodeJson({ signed: { _type: 'desired-state' }, signatures: [] }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/signed\.deviceId/);
  });

  it('checks a stored target without its expiry when asked to', () => {
    const old = cp.signTarget(model.bytes, model.metadata);
    const expired = signEnvelope({ ...old.signed, expires: '2020-01-01T00:00:00Z' }, [key]);
    const t = { envelope: expired, raw: expired };
    expect(checkModelTarget(t, [key.publicKey], { checkExpiry: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(checkModelTarget(t, [key.publicKey], { checkExpiry: false })).toEqual({ ok: true });
  });
});

describe('signed documents with non-integer numbers', () => {
  it('verifies a target whose metadata carries normalisation constants like 1/255', () => {
    const imagenet = { ...model.metadata, normalization: { scale: 1 / 255, mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] } };
    const t = cp.signTarget(model.bytes, imagenet);
    expect(checkDesiredState(received(cp.desiredState('gate-1', 4, t)), ctx)).toEqual({ ok: true });
  });
});
