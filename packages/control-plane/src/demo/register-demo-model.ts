import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** Registers the demo model through the REST API, as an operator would, unless that version is already there. */
export async function registerIfMissing(api: string, token: string, name: string, version: string, modelPath: string, metadataPath: string, log: Logger): Promise<void> {
  const authorization = `Bearer ${token}`;
  const existing = await fetch(`${api}/models/${name}/versions/${version}`, { headers: { authorization } });
  if (existing.ok) {
    log.info({ model: name, version }, 'demo model already registered');
    return;
  }
  const form = new FormData();
  form.set('version', version);
  form.set('metadata', readFileSync(metadataPath, 'utf8'));
  form.set('file', new Blob([readFileSync(modelPath)]), `${name}.onnx`);
  const res = await fetch(`${api}/models/${name}/versions`, { method: 'POST', body: form, headers: { authorization } });
  if (!res.ok) throw new Error(`registering the demo model failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { sha256: string };
  log.info({ model: name, version, sha256: body.sha256 }, 'demo model registered and signed');
}
