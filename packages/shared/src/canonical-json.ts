import { canonicalize } from '@tufjs/canonical-json';

/**
 * The bytes a signature covers. TUF's canonical JSON (OLPC, as
 * @tufjs/canonical-json implements it) cannot encode a non-integer number,
 * yet model metadata carries normalisation constants such as 1/255. This
 * gives exactly the bytes of @tufjs/canonical-json for every document that
 * one can encode, and writes any other finite number as JSON.stringify does
 * (ECMAScript's shortest round-trip form, as RFC 8785 does), which every
 * JavaScript engine produces identically.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'number' && !Number.isInteger(value)) {
    if (!Number.isFinite(value)) throw new TypeError(`cannot encode ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const body = Object.keys(obj)
      .sort()
      .map((k) => `${canonicalize(k)}:${canonicalJson(obj[k])}`)
      .join(',');
    return `{${body}}`;
  }
  // strings, booleans, integers, null; throws on anything else, as TUF's encoder does
  return canonicalize(value as never);
}
