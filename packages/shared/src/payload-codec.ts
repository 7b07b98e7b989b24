import type { z } from 'zod';

/**
 * Every payload that crosses a boundary is decoded here: JSON (or raw bytes)
 * then a zod schema. Failures carry one readable message naming the field.
 */
export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

export function decodeJson<S extends z.ZodType>(schema: S, payload: Uint8Array | string): Decoded<z.infer<S>> {
  let raw: unknown;
  try {
    const text = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `malformed JSON: ${(err as Error).message}` };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, error: formatZodError(parsed.error) };
  return { ok: true, value: parsed.data };
}

export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
