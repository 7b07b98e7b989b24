import type { Context } from 'hono';

/** Keys whose values are secrets, wherever they appear in a body. */
const SECRET_KEY = /secret|token|password|passphrase|credential|private|authorization|api[-_]?key|^key$/i;
/** A Perch API token, or anything shaped like one, inside any string. */
const TOKEN_VALUE = /perch_[A-Za-z0-9_-]{16,}/g;
const MAX_STRING = 120;
const MAX_ITEMS = 20;
const MAX_DEPTH = 4;
export const REDACTED = '[redacted]';

function summarizeString(s: string): string {
  const clean = s.replace(TOKEN_VALUE, REDACTED);
  return clean.length > MAX_STRING ? `${clean.slice(0, MAX_STRING)}… (${clean.length} chars)` : clean;
}

/** A JSON value with secrets replaced and long strings, arrays and deep objects cut short. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return summarizeString(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_DEPTH) return Array.isArray(value) ? `[${value.length} items]` : '{…}';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((v) => redact(v, depth + 1));
    return value.length > MAX_ITEMS ? [...items, `… ${value.length - MAX_ITEMS} more`] : items;
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) ? REDACTED : redact(v, depth + 1)]));
}

/**
 * What an audit entry keeps of a request body: JSON redacted; form fields
 * redacted, files as name and size; anything else as its type and length.
 * Bodies a handler read are cached by the request, so this reads nothing twice.
 */
export async function summarizeRequestBody(c: Context): Promise<unknown> {
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  const length = c.req.header('content-length');
  if (!type && (length === undefined || length === '0')) return null;
  try {
    if (/^application\/([\w.-]+\+)?json/.test(type)) return redact(await c.req.json());
    if (type.startsWith('multipart/form-data') || type.startsWith('application/x-www-form-urlencoded')) {
      const form = await c.req.formData();
      const out: Record<string, unknown> = {};
      form.forEach((v, k) => {
        out[k] = typeof v === 'string' ? (SECRET_KEY.test(k) ? REDACTED : summarizeString(v)) : { file: v.name, bytes: v.size };
      });
      return out;
    }
  } catch {
    return { contentType: type, unreadable: true };
  }
  return { contentType: type || null, bytes: length === undefined ? null : Number(length) };
}
