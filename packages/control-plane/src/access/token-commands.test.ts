import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiSite, type ApiSite } from '../test-support/api-site.js';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const run = promisify(execFile);

let dir: string;
let configFile: string;
let site: ApiSite;

/** The real CLI in its own process, on the data directory of the running control plane. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', CLI, 'tokens', ...args, '--config', configFile], { env: { ...process.env, PERCH_LOG_LEVEL: 'silent' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-token-cli-'));
  configFile = join(dir, 'control-plane.yaml');
  writeFileSync(configFile, 'dataDir: data\n');
  site = await startApiSite({}, join(dir, 'data'));
});
afterAll(async () => {
  await site.cp.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('perch-control-plane tokens', () => {
  it('creates a token a running control plane accepts at once, with the role it was given', async () => {
    const created = await cli('create', '--name', 'night-shift', '--role', 'operator');
    expect(created.code, created.stderr).toBe(0);
    const token = JSON.parse(created.stdout) as { id: string; role: string; createdBy: string; token: string };
    expect(token).toMatchObject({ role: 'operator', createdBy: 'cli' });
    expect((await site.call(token.token, 'PUT', '/api/v1/devices/gate-3/desired-model', { model: null })).status).toBe(200);
    expect((await site.call(token.token, 'GET', '/api/v1/tokens')).status).toBe(403);

    const listed = await cli('list');
    expect(listed.code).toBe(0);
    const list = JSON.parse(listed.stdout) as { id: string; name: string }[];
    expect(list.map((t) => t.name)).toContain('night-shift');
    expect(listed.stdout).not.toContain(token.token);
    expect(listed.stdout).not.toContain(site.cp.adminToken);

    const revoked = await cli('revoke', token.id);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await site.call(token.token, 'GET', '/api/v1/devices')).status).toBe(401);
    expect(JSON.parse((await cli('list')).stdout)).not.toContainEqual(expect.objectContaining({ id: token.id }));
    expect(JSON.parse((await cli('list', '--all')).stdout)).toContainEqual(expect.objectContaining({ id: token.id }));

    // Both changes are in the audit log, done by the CLI.
    const audit = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/audit?actor=cli')).json()) as { entries: { action: string; target: Record<string, string> }[] };
    expect(audit.entries.map((e) => [e.action, e.target['tokenId']])).toEqual([
      ['tokens revoke', token.id],
      ['tokens create', token.id],
    ]);
  }, 60_000);

  it('refuses a role that is not one, and an unknown id, with a message and exit code 1', async () => {
    const badRole = await cli('create', '--name', 'x', '--role', 'root');
    expect(badRole.code).toBe(1);
    expect(badRole.stderr).toMatch(/--role/);
    const unknown = await cli('revoke', 'tok_nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no API token tok_nope/);
  }, 60_000);
});
