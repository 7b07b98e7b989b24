import { formatZodError } from '@perch/shared';
import type { z } from 'zod';

/**
 * The one error type the API answers with. Every error reaches the client as
 * `{ error: { code, message, field? } }` with the matching HTTP status.
 */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 500 | 503,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON(): { error: { code: string; message: string; field?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } };
  }
}

export class NotFoundError extends ApiError {
  constructor(message: string) {
    super(404, 'not_found', message);
  }
}

export class ValidationError extends ApiError {
  constructor(message: string, field?: string) {
    super(400, 'validation_failed', message, field);
  }
}

/** No token, an unknown one or a revoked one. */
export class UnauthorizedError extends ApiError {
  constructor(message: string) {
    super(401, 'unauthorized', message);
  }
}

/** A valid token whose role is below what the route needs. */
export class ForbiddenError extends ApiError {
  constructor(message: string) {
    super(403, 'forbidden', message);
  }
}

/** A zod failure as the one validation error, naming the first field at fault (under `prefix`, e.g. `metadata.`). */
export function toValidationError(error: z.ZodError, prefix = ''): ValidationError {
  const first = error.issues[0];
  const field = first && first.path.length > 0 ? `${prefix}${first.path.join('.')}` : prefix.replace(/\.$/, '') || undefined;
  return new ValidationError(formatZodError(error), field);
}

/** Parses with zod; a failure names the first field at fault. */
export function parseOr400<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw toValidationError(r.error, prefix);
}
