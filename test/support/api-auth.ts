/** Where the REST API is and the token to call it with: a TestControlPlane is one. */
export interface ApiAccess {
  /** http://127.0.0.1:port/api/v1 */
  api: string;
  adminToken: string;
}

/** `headers` with `Authorization: Bearer <token>` added. */
export function bearer(token: string, headers: Record<string, string> = {}): Record<string, string> {
  return { ...headers, authorization: `Bearer ${token}` };
}
