import { z } from 'zod';

/** API token roles, weakest first: each may do all that the ones before it may. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export const roleSchema = z.enum(ROLES);

export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export function strongerRole(a: Role, b: Role): Role {
  return roleAtLeast(a, b) ? a : b;
}
