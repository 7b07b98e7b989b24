import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { waitUntil } from './support/wait-until.js';

/**
 * The README's first command (`npm start`, after the build) on a fresh data
 * folder: the demo builds its model, starts the control plane and a local
 * agent, and predictions show in the log and through the API.
 */
const DEMO = fileURLToPath(new URL('../packages/control-plane/dist/demo/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'perch-quick-start-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('runs Perch on its embedded defaults and shows predictions in the log and the API', async () => {
  const child = spawn(process.execPath, [DEMO], {
    env: { ...process.env, PERCH_DEMO_DIR: dir, PERCH_MQTT_PORT: '0', PERCH_HTTP_PORT: '0', PERCH_MQTT_HOST: '127.0.0.1', PERCH_HTTP_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const api = await waitUntil(() => /"?api"?:\s*"(http:\/\/127\.0\.0\.1:\d+\/api\/v1)"/.exec(out)?.[1], 'the demo to announce its API', 90_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${out.slice(-3000)}`);
    });
    // The API wants the admin token, from the file the demo names in its log (never the token itself).
    const tokenFile = join(dir, 'control-plane', 'secrets', 'admin-token');
    const token = readFileSync(tokenFile, 'utf8').trim();
    const headers = { authorization: `Bearer ${token}` };
    // The agent's own window summary in the log...
    await waitUntil(() => /camera pet-park: \d+ inferred/.test(out), 'a prediction summary in the log', 60_000);
    // ...and the same predictions through the API.
    const totals = await waitUntil(async () => {
      const res = await fetch(`${api}/devices/demo-agent-1/predictions?since=0`, { headers });
      const body = (await res.json()) as { framesInferred: number; classCounts: Record<string, number> };
      return body.framesInferred > 0 ? body : null;
    }, 'predictions through the API', 60_000);
    expect(Object.keys(totals.classCounts).every((l) => ['empty', 'cat', 'dog'].includes(l))).toBe(true);
    // Predictions flow from the switch on; 'active' follows once the model's health window has passed.
    const device = await waitUntil(async () => {
      const d = (await (await fetch(`${api}/devices/demo-agent-1`, { headers })).json()) as { status: string; reported: { deployment: { phase: string } } };
      return d.reported.deployment.phase === 'health-check' ? null : d;
    }, 'the health window to end', 60_000);
    expect(device.status).toBe('online');
    expect(device.reported.deployment.phase).toBe('active');
    expect(out).toContain(tokenFile);
    expect(out).not.toContain(token);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
}, 240_000);
