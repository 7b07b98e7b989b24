import {
  canonicalJson,
  formatZodError,
  isExpired,
  modelTargetPath,
  modelTargetFromTuf,
  modelTargetSchema,
  signedDesiredStateSchema,
  type Decoded,
  type ModelTarget,
  type SignedDesiredState,
  type TufTargetEntry,
  type VerifyResult,
} from '@perch/shared';

/**
 * A model target the device has checked against its verified TUF targets
 * metadata (or read back from its own store, where only checked targets go).
 */
export type VerifiedTarget = ModelTarget;

/**
 * Signatures are checked over the document exactly as it arrived, not over
 * zod's output: parsing drops unknown fields and fills defaults, and a
 * signature over either would then fail (or, worse, vouch for bytes nobody
 * signed). So every signed document is kept beside its raw JSON.
 */
export interface ReceivedDesiredState {
  envelope: SignedDesiredState;
  rawSigned: unknown;
}

function parseJson(payload: Uint8Array | string): Decoded<unknown> {
  try {
    const text = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: `malformed JSON: ${(err as Error).message}` };
  }
}

export function decodeDesiredState(payload: Uint8Array | string): Decoded<ReceivedDesiredState> {
  const json = parseJson(payload);
  if (!json.ok) return json;
  const parsed = signedDesiredStateSchema.safeParse(json.value);
  if (!parsed.success) return { ok: false, error: formatZodError(parsed.error) };
  return { ok: true, value: { envelope: parsed.data, rawSigned: (json.value as { signed: unknown }).signed } };
}

/**
 * A target document from the device's own store. Models installed by an
 * earlier release kept the target in its own signed envelope: its `signed`
 * part is the same description.
 */
export function decodeStoredTarget(raw: unknown): Decoded<VerifiedTarget> {
  const inner = typeof raw === 'object' && raw !== null && 'signed' in raw ? (raw as { signed: unknown }).signed : raw;
  const parsed = modelTargetSchema.safeParse(inner);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: formatZodError(parsed.error) };
}

export type Check = { ok: true } | { ok: false; reason: string; signature?: boolean };

export interface DesiredStateContext {
  deviceId: string;
  /** the signature check by the trusted root's `desired` role */
  signatures: (envelope: { signed: unknown; signatures: SignedDesiredState['signatures'] }) => VerifyResult;
  acceptedGeneration: number;
  now?: Date;
}

/**
 * The checks a desired state must pass before the device acts on it, in
 * TUF's order: signature first (nothing unsigned is looked at further),
 * then who it is for, freshness (freeze) and generation (rollback/replay).
 * The model it names is checked against the targets metadata afterwards
 * (checkAgainstSignedTarget), once that metadata is fresh.
 */
export function checkDesiredState(received: ReceivedDesiredState, ctx: DesiredStateContext): Check {
  const { envelope } = received;
  let sig: VerifyResult;
  try {
    sig = ctx.signatures({ signed: received.rawSigned, signatures: envelope.signatures });
  } catch (err) {
    // Canonical JSON cannot encode some values: a refusal too, never a crash.
    sig = { ok: false, error: `signature check failed: ${(err as Error).message}` };
  }
  if (!sig.ok) return { ok: false, reason: `desired state: ${sig.error}`, signature: true };
  const d = envelope.signed;
  if (d.deviceId !== ctx.deviceId) return { ok: false, reason: `desired state is for device ${d.deviceId}, this is ${ctx.deviceId}` };
  if (isExpired(d.expires, ctx.now)) return { ok: false, reason: `desired state generation ${d.generation} expired at ${d.expires}` };
  if (d.generation < ctx.acceptedGeneration) {
    return { ok: false, reason: `replay: desired state generation ${d.generation} is older than the accepted generation ${ctx.acceptedGeneration}` };
  }
  for (const t of [d.active, d.shadow]) {
    if (t && t.path !== modelTargetPath(t.custom.name, t.custom.version)) {
      return { ok: false, reason: `model target path ${t.path} does not match ${modelTargetPath(t.custom.name, t.custom.version)}` };
    }
  }
  return { ok: true };
}

/** The models a desired state names: the champion (`active`) and the challenger (`shadow`). */
export type DesiredRole = 'active' | 'shadow';

/**
 * A model the desired state names (the champion, or the challenger in
 * shadow mode) must be, to the last field, the one the targets role signed:
 * a desired state paired with another moment's target (mix-and-match), or
 * naming a file the targets role never signed (arbitrary software), is
 * refused. Returns the target as TUF lists it.
 */
export function checkAgainstSignedTarget(
  rawDesired: unknown,
  signed: TufTargetEntry | undefined,
  role: DesiredRole = 'active',
): { ok: true; target: VerifiedTarget } | { ok: false; reason: string } {
  const active = (rawDesired as Partial<Record<DesiredRole, { path?: unknown }>> | null)?.[role];
  const path = typeof active?.path === 'string' ? active.path : '?';
  if (!signed) return { ok: false, reason: `arbitrary model: target ${path} is not in the signed targets metadata` };
  const listed = modelTargetFromTuf(signed);
  if (!listed.ok) return { ok: false, reason: `signed target ${path} is not a Perch model target: ${listed.error}` };
  // Compared as sent, unknown fields included: the device runs nothing the targets role did not describe.
  if (canonicalJson(active) !== canonicalJson({ path: signed.path, length: signed.length, hashes: signed.hashes, custom: listed.value.signedCustom })) {
    return { ok: false, reason: `mix-and-match: the desired state's description of ${path} differs from the signed targets metadata` };
  }
  return { ok: true, target: listed.value.target };
}

/**
 * A model registered before the one running, under the same name, runs only
 * when the desired state says, signed, that going back is meant.
 */
export function checkDowngrade(next: VerifiedTarget, running: VerifiedTarget | null, rollback: boolean): Check {
  if (rollback || !running || running.custom.name !== next.custom.name) return { ok: true };
  if (Date.parse(next.custom.createdAt) >= Date.parse(running.custom.createdAt)) return { ok: true };
  return {
    ok: false,
    reason: `downgrade: ${next.custom.name} ${next.custom.version} (registered ${next.custom.createdAt}) is older than the running ${running.custom.version} (registered ${running.custom.createdAt}) and the desired state is not a signed rollback`,
  };
}
