import {
  formatZodError,
  isExpired,
  modelTargetPath,
  signedDesiredStateSchema,
  signedModelTargetSchema,
  verifyEnvelope,
  type Decoded,
  type PublicKey,
  type SignedDesiredState,
  type SignedModelTarget,
} from '@perch/shared';

/**
 * Signatures are checked over the document exactly as it arrived, not over
 * zod's output: parsing drops unknown fields and fills defaults, and a
 * signature over either would then fail (or, worse, vouch for bytes nobody
 * signed). So every signed document is kept beside its raw JSON.
 */
export interface ReceivedDesiredState {
  envelope: SignedDesiredState;
  rawSigned: unknown;
  /** the nested signed model target as received; null when `active` is null */
  rawTarget: RawEnvelope | null;
}

export interface RawEnvelope {
  signed: unknown;
  signatures: unknown;
}

export interface VerifiedTarget {
  envelope: SignedModelTarget;
  raw: RawEnvelope;
}

function parseJson(payload: Uint8Array | string): Decoded<unknown> {
  try {
    const text = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: `malformed JSON: ${(err as Error).message}` };
  }
}

function rawEnvelopeOf(value: unknown): RawEnvelope {
  // Only called after a schema accepted `value` as an envelope.
  const v = value as RawEnvelope;
  return { signed: v.signed, signatures: v.signatures };
}

export function decodeDesiredState(payload: Uint8Array | string): Decoded<ReceivedDesiredState> {
  const json = parseJson(payload);
  if (!json.ok) return json;
  const parsed = signedDesiredStateSchema.safeParse(json.value);
  if (!parsed.success) return { ok: false, error: formatZodError(parsed.error) };
  const raw = rawEnvelopeOf(json.value);
  const rawActive = (raw.signed as { active: unknown }).active;
  return {
    ok: true,
    value: { envelope: parsed.data, rawSigned: raw.signed, rawTarget: rawActive === null ? null : rawEnvelopeOf(rawActive) },
  };
}

export function decodeModelTarget(raw: unknown): Decoded<VerifiedTarget> {
  const parsed = signedModelTargetSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, error: formatZodError(parsed.error) };
  return { ok: true, value: { envelope: parsed.data, raw: rawEnvelopeOf(raw) } };
}

export type Check = { ok: true } | { ok: false; reason: string };

/** verifyEnvelope throws when canonical JSON cannot encode a value: that is a refusal too, never a crash. */
function verify(envelope: { signed: unknown; signatures: SignedDesiredState['signatures'] }, trusted: readonly PublicKey[]): Check {
  try {
    const r = verifyEnvelope(envelope, trusted);
    return r.ok ? { ok: true } : { ok: false, reason: r.error };
  } catch (err) {
    return { ok: false, reason: `signature check failed: ${(err as Error).message}` };
  }
}

/** Signature of a model target by the trusted keys, and that it describes itself consistently. */
export function checkModelTarget(target: VerifiedTarget, trusted: readonly PublicKey[], opts: { now?: Date; checkExpiry: boolean }): Check {
  const sig = verify({ signed: target.raw.signed, signatures: target.envelope.signatures }, trusted);
  if (!sig.ok) return { ok: false, reason: `model target: ${sig.reason}` };
  const t = target.envelope.signed;
  if (opts.checkExpiry && isExpired(t.expires, opts.now)) return { ok: false, reason: `model target ${t.custom.name}@${t.custom.version} expired at ${t.expires}` };
  const want = modelTargetPath(t.custom.name, t.custom.version);
  if (t.path !== want) return { ok: false, reason: `model target path ${t.path} does not match ${want}` };
  return { ok: true };
}

export interface DesiredStateContext {
  deviceId: string;
  trustedKeys: readonly PublicKey[];
  acceptedGeneration: number;
  now?: Date;
}

/**
 * The checks a desired state must pass before the device acts on it, in
 * TUF's order: signature first (nothing unsigned is looked at further),
 * then who it is for, freshness (freeze) and generation (rollback/replay),
 * then the nested model target (arbitrary software, mix-and-match).
 */
export function checkDesiredState(received: ReceivedDesiredState, ctx: DesiredStateContext): Check {
  const { envelope } = received;
  const sig = verify({ signed: received.rawSigned, signatures: envelope.signatures }, ctx.trustedKeys);
  if (!sig.ok) return { ok: false, reason: `desired state: ${sig.reason}` };
  const d = envelope.signed;
  if (d.deviceId !== ctx.deviceId) return { ok: false, reason: `desired state is for device ${d.deviceId}, this is ${ctx.deviceId}` };
  if (isExpired(d.expires, ctx.now)) return { ok: false, reason: `desired state generation ${d.generation} expired at ${d.expires}` };
  if (d.generation < ctx.acceptedGeneration) {
    return { ok: false, reason: `replay: desired state generation ${d.generation} is older than the accepted generation ${ctx.acceptedGeneration}` };
  }
  if (d.active !== null && received.rawTarget !== null) {
    return checkModelTarget({ envelope: d.active, raw: received.rawTarget }, ctx.trustedKeys, { now: ctx.now, checkExpiry: true });
  }
  return { ok: true };
}
