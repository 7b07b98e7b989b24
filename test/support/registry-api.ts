import { expect } from 'vitest';
import { bearer, type ApiAccess } from './api-auth.js';

/** Uploads a model version through the REST API, as an operator would; the test fails unless it is registered. */
export async function registerModel({ api, adminToken }: ApiAccess, name: string, version: string, metadata: unknown, bytes: Uint8Array): Promise<{ sha256: string; length: number; target: unknown }> {
  const form = new FormData();
  form.set('version', version);
  form.set('metadata', JSON.stringify(metadata));
  form.set('file', new Blob([bytes]), 'model.onnx');
  const res = await fetch(`${api}/models/${name}/versions`, { method: 'POST', body: form, headers: bearer(adminToken) });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { sha256: string; length: number; target: unknown };
}

/** Sets a device's desired model through the REST API; resolves with the generation it got. */
export async function desireModel({ api, adminToken }: ApiAccess, deviceId: string, name: string, version: string, opts: { rollback?: boolean } = {}): Promise<number> {
  const res = await fetch(`${api}/devices/${deviceId}/desired-model`, {
    method: 'PUT',
    headers: bearer(adminToken, { 'content-type': 'application/json' }),
    body: JSON.stringify({ model: { name, version }, ...(opts.rollback ? { rollback: true } : {}) }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { generation: number }).generation;
}
