import type { Context } from 'hono';
import { matchedRoutes } from 'hono/route';

export interface MatchedRoute {
  /** the pattern the handler was registered with, e.g. `/api/v1/devices/:id`; the request path when no route matched */
  pattern: string;
  /** the pattern's parameters, read from the request path */
  params: Record<string, string>;
}

/** `:id`, `:id{[0-9]+}`, `:id?` -> `id` */
function paramName(segment: string): string | null {
  if (!segment.startsWith(':')) return null;
  return segment.slice(1).replace(/\{.*\}$/, '').replace(/\?$/, '');
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * The route that will answer the request, known to middleware before the
 * handler runs: the last matched route registered for a method (middleware
 * is registered for ALL). Roles and audit entries go by this pattern, not
 * by the raw path, so they hold for routes mounted from any route file and
 * cannot be dodged by spelling a path differently.
 */
export function matchedRoute(c: Context): MatchedRoute {
  const route = matchedRoutes(c).findLast((r) => r.method !== 'ALL');
  if (!route) return { pattern: c.req.path, params: {} };
  const patternSegments = route.path.split('/');
  // The raw path, each segment decoded once (c.req.path is decoded already, except %2F).
  const pathSegments = new URL(c.req.url).pathname.split('/');
  const params: Record<string, string> = {};
  patternSegments.forEach((segment, i) => {
    const name = paramName(segment);
    const value = pathSegments[i];
    if (name && value !== undefined && value !== '') params[name] = decodeSegment(value);
  });
  return { pattern: route.path, params };
}
