import type { ApiTokenRecord } from '../store/api-token-store.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A token as the API and the CLI show it: times as ISO 8601, never a secret (the store has none to give). */
export function apiTokenView(t: ApiTokenRecord) {
  return { id: t.id, name: t.name, role: t.role, createdAt: new Date(t.createdAt).toISOString(), createdBy: t.createdBy, lastUsedAt: iso(t.lastUsedAt), revokedAt: iso(t.revokedAt) };
}
