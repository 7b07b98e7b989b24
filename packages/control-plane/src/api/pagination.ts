import { z } from '@hono/zod-openapi';
import { ValidationError } from './api-error.js';

/**
 * Keyset pagination: a page is the `limit` items after the last one the
 * client saw, in a stable order, and `nextCursor` names that last one. The
 * cursor is opaque to clients (base64url JSON of the sort key), so items
 * added or removed between pages neither repeat nor shift the others.
 */
export const limitQuery = (fallback: number) =>
  z.coerce.number().int().min(1).max(1000).default(fallback).openapi({ description: `items per page, 1-1000 (default ${fallback})` });

export const cursorQuery = z.string().min(1).max(512).optional().openapi({ description: 'the `nextCursor` of the previous page; absent for the first page' });

export const nextCursorSchema = z.string().nullable().openapi({ description: 'pass as `cursor` for the next page; null on the last page' });

export function encodeCursor(key: unknown): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** The sort key a cursor names; a cursor this API did not give out is a 400 naming `cursor`. */
export function decodeCursor<S extends z.ZodType>(cursor: string | undefined, schema: S): z.infer<S> | null {
  if (cursor === undefined) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    raw = undefined;
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new ValidationError('cursor: not a cursor this API gave out; pass the nextCursor of the previous page', 'cursor');
  return r.data;
}

/** One page from up to `limit + 1` rows: the extra row only says there is another page. */
export function pageOf<T>(rows: readonly T[], limit: number, keyOf: (last: T) => unknown): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null };
}
