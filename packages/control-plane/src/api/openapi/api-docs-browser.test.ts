import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiSite, type ApiSite } from '../../test-support/api-site.js';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `PERCH_CHROMIUM`, else `chromium` on PATH (Debian's; .ci/run installs it); null when there is none. */
const candidates = process.env.PERCH_CHROMIUM ? [process.env.PERCH_CHROMIUM] : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'chromium'));
const chromium = candidates.find(executable) ?? null;
if (chromium === null) console.warn('api-docs-browser.test.ts: SKIPPED, no Chromium (apt-get install chromium, or set PERCH_CHROMIUM to its path)');

/**
 * The page as Chromium renders it, once its scripts ran (`--dump-dom`).
 * Every host name but 127.0.0.1 resolves to nothing, so a page that needs
 * the internet renders without it or not at all. Chromium runs in a
 * process group of its own, killed whole if it hangs, with a fresh
 * profile folder removed afterwards.
 */
async function renderedDom(browser: string, url: string): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'perch-chromium-'));
  const child = spawn(
    browser,
    [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      `--user-data-dir=${profile}`,
      '--virtual-time-budget=10000',
      '--dump-dom',
      url,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const guard = setTimeout(killGroup, 60_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    if (code !== 0) throw new Error(`chromium exited with ${code}: ${stderr}`);
    return stdout;
  } finally {
    clearTimeout(guard);
    // Its renderer and utility processes share the group: none outlives the test.
    killGroup();
    rmSync(profile, { recursive: true, force: true });
  }
}

describe.skipIf(chromium === null)('interactive API docs in Chromium', () => {
  let site: ApiSite;
  let dom: string;

  beforeAll(async () => {
    site = await startApiSite();
    if (chromium === null) throw new Error('unreachable: the suite is skipped without Chromium');
    dom = await renderedDom(chromium, `${site.base}/api/docs`);
  }, 90_000);
  afterAll(() => site?.stop());

  it('render the document: its title and an operation block per route, from files this control plane serves', () => {
    // Assertions on what was found, not on the whole DOM: a failure would print a megabyte.
    expect(dom.length).toBeGreaterThan(10_000);
    // Rendered by Swagger UI's bundle from /api/v1/openapi.json: neither is in the page's own HTML.
    expect(/<h[12] class="title">Perch control plane API/.test(dom), 'the info title rendered').toBe(true);
    const paths = new Set([...dom.matchAll(/class="opblock-summary-path" data-path="([^"]+)"/g)].map((m) => m[1]));
    expect([...paths]).toEqual(expect.arrayContaining(['/devices', '/devices/{id}', '/models/{name}/versions', '/claim-tokens', '/fleet/summary', '/admin/backup']));
    const blocks = [...dom.matchAll(/class="opblock opblock-(get|post|put|delete)"/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThanOrEqual(30);
    expect(new Set(blocks)).toEqual(new Set(['get', 'post', 'put', 'delete']));
    expect(/Failed to load API definition/.test(dom), 'an error box').toBe(false);
  });
});
