import { Hono } from 'hono';
import { trustedKeysDocument } from '../../registry/signing-keys.js';
import type { ApiDeps } from '../api-deps.js';

/** The public keys devices must trust (the agent's `trust.keysFile`). */
export function trustRoutes(deps: ApiDeps) {
  const app = new Hono();
  app.get('/keys', (c) => c.json({ keys: trustedKeysDocument(deps.signingKeys) }));
  return app;
}
