import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadControlPlaneConfig, type ControlPlaneConfigInput } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { createLogger } from '../logger.js';

/** A real control plane on loopback ports, called over real HTTP. */
export interface ApiSite {
  cp: ControlPlane;
  dir: string;
  /** http://127.0.0.1:port */
  base: string;
  /** `base + path`, with `Authorization: Bearer <token>` unless token is null; a JSON body is sent as JSON */
  call(token: string | null, method: string, path: string, body?: unknown): Promise<Response>;
  stop(): Promise<void>;
}

export async function startApiSite(overrides: ControlPlaneConfigInput = {}, dir = mkdtempSync(join(tmpdir(), 'perch-api-'))): Promise<ApiSite> {
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { dataDir: dir, ...overrides, mqtt: { host: '127.0.0.1', port: 0 }, http: { ...overrides.http, host: '127.0.0.1', port: 0 }, log: { level: 'silent' } },
  });
  const cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
  const base = `http://127.0.0.1:${cp.httpPort}`;
  return {
    cp,
    dir,
    base,
    call: (token, method, path, body) => {
      const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      return fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    },
    stop: async () => {
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a token with `role` through the API, as an admin would; its secret. */
export async function createToken(site: ApiSite, name: string, role: 'viewer' | 'operator' | 'admin'): Promise<{ id: string; token: string }> {
  const res = await site.call(site.cp.adminToken, 'POST', '/api/v1/tokens', { name, role });
  if (res.status !== 201) throw new Error(`creating token ${name}: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; token: string };
}
