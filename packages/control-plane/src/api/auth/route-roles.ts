import { strongerRole, type Role } from '../../access/roles.js';

/** `public`: no token needed. */
export type RouteAccess = Role | 'public';

const READS = ['GET', 'HEAD', 'OPTIONS'] as const;
const CHANGES = ['POST', 'PUT', 'PATCH', 'DELETE'] as const;

export interface RoleRule {
  /** a route pattern prefix; `*` stands for one path segment (`/api/v1/devices/*` covers `/api/v1/devices/:id` and all below it) */
  path: string;
  /** the methods it applies to; all when absent */
  methods?: readonly string[];
  role: Role;
}

/**
 * Routes that need more than the default (viewer to read, operator to
 * change). A rule can only raise a route's role, never lower it; routes
 * under a prefix added later, from any route file, get the prefix's role.
 */
export const ADMIN_RULES: readonly RoleRule[] = [
  { path: '/api/v1/tokens', role: 'admin' },
  { path: '/api/v1/audit', role: 'admin' },
  { path: '/api/v1/admin', role: 'admin' },
  { path: '/api/v1/claim-tokens', role: 'admin' },
  { path: '/api/v1/devices/*/revoke', role: 'admin' },
  { path: '/api/v1/devices/*/credentials', role: 'admin' },
  // Key rotation and revocation change what every device trusts.
  { path: '/api/v1/trust', methods: CHANGES, role: 'admin' },
];

/** Exactly these routes answer without a token: liveness, the API's own description, and TUF's root (public by design: devices are provisioned with it). */
export const PUBLIC_ROUTES: readonly { path: string; methods: readonly string[] }[] = [
  { path: '/api/v1/health', methods: READS },
  { path: '/api/v1/openapi.json', methods: READS },
  { path: '/api/v1/trust/root', methods: READS },
];

export function defaultRole(method: string): Role {
  return (READS as readonly string[]).includes(method.toUpperCase()) ? 'viewer' : 'operator';
}

function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/** Whether `rulePath` is a prefix of `pattern`, segment by segment, `*` matching any one segment. */
function coversPrefix(rulePath: string, pattern: string): boolean {
  const rule = segments(rulePath);
  const route = segments(pattern);
  if (route.length < rule.length) return false;
  return rule.every((s, i) => s === '*' || s === route[i]);
}

const appliesTo = (methods: readonly string[] | undefined, method: string) => methods === undefined || methods.includes(method.toUpperCase());

/** The least a token must be to call `method` on the route `pattern` (as registered, e.g. `/api/v1/devices/:id/revoke`). */
export function requiredAccess(method: string, pattern: string, rules: readonly RoleRule[] = ADMIN_RULES): RouteAccess {
  const normalized = `/${segments(pattern).join('/')}`;
  if (PUBLIC_ROUTES.some((r) => r.path === normalized && appliesTo(r.methods, method))) return 'public';
  return rules.filter((r) => appliesTo(r.methods, method) && coversPrefix(r.path, pattern)).reduce<Role>((need, r) => strongerRole(need, r.role), defaultRole(method));
}
