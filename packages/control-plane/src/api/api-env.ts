import type { ApiTokenRecord } from '../store/api-token-store.js';

/** What the auth middleware leaves on the request context for the routes and the audit trail. */
export interface ApiEnv {
  Variables: {
    /** the stored token the request's bearer secret belongs to (revoked too, so refusals are attributed); set before any handler runs */
    apiToken: ApiTokenRecord | undefined;
    /** ids a handler adds to the audit entry besides the route parameters, e.g. the id of what it created */
    auditTargets: Record<string, string> | undefined;
  };
}
