import { createHash } from 'node:crypto';
import { encodeJson, generateSigningKey, modelTargetPath, signEnvelope, tufTargetOf, verifyEnvelope, type DesiredState, type ModelMetadata, type ModelTarget } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { checkAgainstSignedTarget, checkDesiredState, checkDowngrade, decodeDesiredState, decodeStoredTarget, type ReceivedDesiredState } from './signed-documents.js';

const key = generateSigningKey();
const stranger = generateSigningKey();
const model = buildTinyModel();
const ctx = { deviceId: 'gate-1', signatures: (e: Parameters<typeof verifyEnvelope>[0]) => verifyEnvelope(e, [key.publicKey]), acceptedGeneration: 3 };

function targetOf(metadata: ModelMetadata, version = '1', createdAt = '2026-01-01T00:00:00Z'): ModelTarget {
  return {
    path: modelTargetPath('tiny', version),
    length: model.bytes.length,
    hashes: { sha256: createHash('sha256').update(model.bytes).digest('hex') },
    custom: { name: 'tiny', version, format: 'onnx', metadata, createdAt },
  };
}
const target = targetOf(model.metadata);

function desired(deviceId: string, generation: number, active: ModelTarget | null, opts: { expires?: string; rollback?: boolean } = {}): DesiredState {
  return {
    _type: 'desired-state',
    spec_version: '1.0',
    version: generation,
    expires: opts.expires ?? '2099-01-01T00:00:00Z',
    deviceId,
    generation,
    issuedAt: new Date().toISOString(),
    active,
    ...(opts.rollback ? { rollback: true } : {}),
  };
}

function received(doc: unknown): ReceivedDesiredState {
  const d = decodeDesiredState(encodeJson(doc));
  if (!d.ok) throw new Error(d.error);
  return d.value;
}

describe('desired state checks', () => {
  it('accepts a state signed by the desired role for this device', () => {
    expect(checkDesiredState(received(signEnvelope(desired('gate-1', 4, target), [key])), ctx)).toEqual({ ok: true });
    expect(checkDesiredState(received(signEnvelope(desired('gate-1', 3, null), [key])), ctx)).toEqual({ ok: true });
  });

  it('refuses an unknown key, another device, an expired state and an older generation, each with its reason', () => {
    const unknown = checkDesiredState(received(signEnvelope(desired('gate-1', 4, target), [stranger])), ctx);
    expect(unknown).toEqual({ ok: false, signature: true, reason: 'desired state: signature check failed: 0 of 1 required trusted signatures, 1 by unknown keys' });
    expect(checkDesiredState(received(signEnvelope(desired('gate-2', 4, target), [key])), ctx)).toMatchObject({ ok: false, reason: expect.stringMatching(/for device gate-2/) });
    const expired = signEnvelope(desired('gate-1', 4, target, { expires: '2020-01-01T00:00:00Z' }), [key]);
    expect(checkDesiredState(received(expired), ctx)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(checkDesiredState(received(signEnvelope(desired('gate-1', 2, target), [key])), ctx)).toMatchObject({
      ok: false,
      reason: 'replay: desired state generation 2 is older than the accepted generation 3',
    });
  });

  it('refuses a document altered after signing, even in a field the schema drops', () => {
    const doc = signEnvelope(desired('gate-1', 4, target), [key]);
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

  it('verifies a state whose target carries normalisation constants like 1/255', () => {
    const imagenet = { ...model.metadata, normalization: { scale: 1 / 255, mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] } };
    expect(checkDesiredState(received(signEnvelope(desired('gate-1', 4, targetOf(imagenet)), [key])), ctx)).toEqual({ ok: true });
  });
});

describe('the named model against the signed targets metadata', () => {
  const raw = (active: ModelTarget) => JSON.parse(JSON.stringify(desired('gate-1', 4, active))) as unknown;

  it('accepts the target exactly as the targets role lists it', () => {
    const r = checkAgainstSignedTarget(raw(target), JSON.parse(JSON.stringify(tufTargetOf(target))) as ReturnType<typeof tufTargetOf>);
    expect(r).toEqual({ ok: true, target });
  });

  it('refuses a model the targets role never signed (arbitrary software), and a target Perch did not describe', () => {
    expect(checkAgainstSignedTarget(raw(target), undefined)).toEqual({ ok: false, reason: `arbitrary model: target ${target.path} is not in the signed targets metadata` });
    const foreign = { path: target.path, length: target.length, hashes: target.hashes, custom: { note: 'x' } };
    expect(checkAgainstSignedTarget(raw(target), foreign)).toMatchObject({ ok: false, reason: expect.stringMatching(/not a Perch model target/) });
  });

  it('refuses a description that differs from the signed one in any field (mix-and-match)', () => {
    const otherLabels = targetOf({ ...model.metadata, labels: [...model.metadata.labels].reverse() });
    const otherHash = { ...target, hashes: { sha256: 'f'.repeat(64) } };
    const longer = { ...target, length: target.length + 1 };
    for (const signed of [otherLabels, otherHash, longer]) {
      expect(checkAgainstSignedTarget(raw(target), tufTargetOf(signed))).toMatchObject({ ok: false, reason: expect.stringMatching(/^mix-and-match:/) });
    }
  });
});

describe('downgrades', () => {
  const v1 = targetOf(model.metadata, '1', '2026-01-01T00:00:00Z');
  const v2 = targetOf(model.metadata, '2', '2026-02-01T00:00:00Z');

  it('refuses an older version of the running model unless the state is a signed rollback', () => {
    expect(checkDowngrade(v1, v2, false)).toMatchObject({ ok: false, reason: expect.stringMatching(/^downgrade: tiny 1 .* older than the running 2/) });
    expect(checkDowngrade(v1, v2, true)).toEqual({ ok: true });
    expect(checkDowngrade(v2, v1, false)).toEqual({ ok: true });
    expect(checkDowngrade(v1, null, false)).toEqual({ ok: true });
    // Another model name is a switch, not a downgrade.
    expect(checkDowngrade({ ...v1, custom: { ...v1.custom, name: 'other' } }, v2, false)).toEqual({ ok: true });
  });
});

describe('stored targets', () => {
  it('reads a target as stored now, and one stored in its own envelope by an earlier release', () => {
    expect(decodeStoredTarget(target)).toEqual({ ok: true, value: target });
    const envelope = { signed: { _type: 'model-target', spec_version: '1.0', version: 1, expires: '2020-01-01T00:00:00Z', ...target }, signatures: [] };
    expect(decodeStoredTarget(envelope)).toEqual({ ok: true, value: target });
    expect(decodeStoredTarget({ path: 'x' })).toMatchObject({ ok: false });
  });
});
