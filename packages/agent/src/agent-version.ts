import { createRequire } from 'node:module';

/** The agent's own package version, reported with its status and state. */
export const AGENT_VERSION: string = (() => {
  // ../package.json from both src/ (tests) and dist/ (the running agent).
  const pkg: unknown = createRequire(import.meta.url)('../package.json');
  const v = (pkg as { version?: unknown }).version;
  return typeof v === 'string' ? v.slice(0, 64) : 'unknown';
})();
