import { modelTargetSchema, type ModelTarget } from './model-metadata.js';
import { formatZodError, type Decoded } from './payload-codec.js';

/** A target file as TUF's targets.json lists it. */
export interface TufTargetEntry {
  path: string;
  length: number;
  hashes: Record<string, string>;
  custom?: Record<string, unknown>;
}

/**
 * TUF's canonical JSON, which the TUF libraries sign and verify, has no
 * fractional numbers, and Perch's description of a model is full of them
 * (normalisation constants, golden probabilities). So the description rides
 * in the target's `custom` as one JSON string: signed as it is, parsed after.
 */
export function tufTargetOf(target: ModelTarget): { path: string; length: number; hashes: { sha256: string }; custom: { perch: string } } {
  return { path: target.path, length: target.length, hashes: { ...target.hashes }, custom: { perch: JSON.stringify(target.custom) } };
}

/**
 * The Perch model target a TUF target entry describes, with its `custom` as
 * signed (unknown fields kept, for comparisons); an error for any entry Perch did not make.
 */
export function modelTargetFromTuf(entry: TufTargetEntry): Decoded<{ target: ModelTarget; signedCustom: unknown }> {
  const text = entry.custom?.['perch'];
  if (typeof text !== 'string') return { ok: false, error: 'custom.perch: missing (not a Perch model target)' };
  let custom: unknown;
  try {
    custom = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `custom.perch: malformed JSON: ${(err as Error).message}` };
  }
  const parsed = modelTargetSchema.safeParse({ path: entry.path, length: entry.length, hashes: entry.hashes, custom });
  return parsed.success ? { ok: true, value: { target: parsed.data, signedCustom: custom } } : { ok: false, error: formatZodError(parsed.error) };
}
