import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, startApiSite, type ApiSite } from '../../test-support/api-site.js';

interface Backup {
  name: string;
  bytes: number;
  createdAt: string;
}

let site: ApiSite;
let operator: string;

beforeAll(async () => {
  site = await startApiSite();
  operator = (await createToken(site, 'ci', 'operator')).token;
  for (const id of ['gate-1', 'gate-2', 'gate-3']) await site.cp.issueDeviceCredentials(id, { groups: ['lobby'] });
});
afterAll(() => site.stop());

const backupDir = () => join(site.dir, 'backups');
/** The backups on disk; not the -wal and -shm that opening one (a WAL database, as its source) leaves beside it. */
const backupsOnDisk = () => readdirSync(backupDir()).filter((n) => n.endsWith('.db'));

describe('POST /api/v1/admin/backup', () => {
  it('writes a consistent copy into <dataDir>/backups that opens and holds the rows', async () => {
    const res = await site.call(site.cp.adminToken, 'POST', '/api/v1/admin/backup');
    expect(res.status).toBe(201);
    const made = (await res.json()) as Backup;
    expect(made.name).toMatch(/^perch-\d{8}T\d{9}Z\.db$/);
    const file = join(backupDir(), made.name);
    expect(made.bytes).toBe(statSync(file).size);
    expect(Date.parse(made.createdAt)).toBeGreaterThan(Date.now() - 60_000);
    // Token and device secret hashes are in it: the owner's alone.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(backupDir()).mode & 0o777).toBe(0o700);
    expect(readdirSync(backupDir())).toEqual([made.name]);

    const copy = new Database(file, { readonly: true, fileMustExist: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      const devices = copy.prepare('SELECT id FROM devices ORDER BY id').all() as { id: string }[];
      expect(devices.map((d) => d.id)).toEqual(['gate-1', 'gate-2', 'gate-3']);
      expect(copy.prepare('SELECT COUNT(*) AS n FROM device_credentials').get()).toEqual({ n: 3 });
      const tokens = copy.prepare('SELECT name, role FROM api_tokens ORDER BY created_at').all();
      expect(tokens).toEqual(expect.arrayContaining([{ name: 'ci', role: 'operator' }]));
    } finally {
      copy.close();
    }
  });

  it('takes no path from the caller: a body naming one is not read', async () => {
    const res = await site.call(site.cp.adminToken, 'POST', '/api/v1/admin/backup', { file: '../../escaped.db', name: '/tmp/escaped.db' });
    expect(res.status).toBe(201);
    const made = (await res.json()) as Backup;
    expect(made.name).toMatch(/^perch-\d{8}T\d{9}Z\.db$/);
    expect(existsSync(join(site.dir, '..', 'escaped.db'))).toBe(false);
    expect(existsSync(join(site.dir, 'escaped.db'))).toBe(false);
    expect(existsSync('/tmp/escaped.db')).toBe(false);
  });

  it('is admin only, and the audit log names the backup', async () => {
    const refused = await site.call(operator, 'POST', '/api/v1/admin/backup');
    expect(refused.status).toBe(403);
    expect((await site.call(operator, 'GET', '/api/v1/admin/backups')).status).toBe(403);
    expect((await site.call(null, 'POST', '/api/v1/admin/backup')).status).toBe(401);
    expect(backupsOnDisk()).toHaveLength(2);

    const audit = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/audit?action=POST%20/api/v1/admin/backup')).json()) as {
      entries: { outcome: string; target: Record<string, string> }[];
    };
    expect(audit.entries.map((e) => e.outcome)).toEqual(['denied', 'denied', 'ok', 'ok']);
    expect(audit.entries[2]!.target.backup).toMatch(/^perch-.*\.db$/);
  });
});

describe('GET /api/v1/admin/backups', () => {
  it('lists the backups newest first with their sizes, a page at a time', async () => {
    const all = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/admin/backups')).json()) as { backups: Backup[]; nextCursor: string | null };
    const onDisk = backupsOnDisk().sort().reverse();
    expect(all.backups.map((b) => b.name)).toEqual(onDisk);
    for (const b of all.backups) expect(b.bytes).toBe(statSync(join(backupDir(), b.name)).size);
    expect(all.nextCursor).toBeNull();

    const first = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/admin/backups?limit=1')).json()) as { backups: Backup[]; nextCursor: string };
    expect(first.backups.map((b) => b.name)).toEqual([onDisk[0]]);
    const second = (await (await site.call(site.cp.adminToken, 'GET', `/api/v1/admin/backups?limit=1&cursor=${first.nextCursor}`)).json()) as {
      backups: Backup[];
      nextCursor: string | null;
    };
    expect(second.backups.map((b) => b.name)).toEqual([onDisk[1]]);
    expect(second.nextCursor).toBeNull();
  });
});
