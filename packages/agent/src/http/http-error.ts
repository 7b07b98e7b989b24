/** The one error the local endpoints answer with, as `{ error: { code, message } }` (the control plane's shape). */
export class LocalHttpError extends Error {
  override readonly name = 'LocalHttpError';
  constructor(
    readonly status: 400 | 404 | 500 | 503,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  toJSON(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export class NotFoundError extends LocalHttpError {
  constructor(message: string) {
    super(404, 'not_found', message);
  }
}
