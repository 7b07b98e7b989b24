import type { Context } from 'hono';
import type { ApiEnv } from './api-env.js';

/** Who asked: the API token's name and id, as rollout histories record it. */
export function actorOf(c: Context<ApiEnv>): string | null {
  const t = c.get('apiToken');
  return t ? `${t.name} (${t.id})` : null;
}
