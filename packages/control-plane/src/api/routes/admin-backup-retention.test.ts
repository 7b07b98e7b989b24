import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFileName } from '../../store/backup-folder.js';
import { startApiSite, type ApiSite } from '../../test-support/api-site.js';

interface CreatedBackup {
  name: string;
  bytes: number;
  createdAt: string;
  pruned: string[];
}

let site: ApiSite;
const backupDir = () => join(site.dir, 'backups');
const onDisk = () => readdirSync(backupDir()).sort();

beforeAll(async () => {
  site = await startApiSite({ backup: { keep: 2 } });
});
afterAll(() => site.stop());

async function backUp(): Promise<CreatedBackup> {
  // Names are per millisecond; two in the same one are refused (409), so step past it.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const res = await site.call(site.cp.adminToken, 'POST', '/api/v1/admin/backup');
  expect(res.status).toBe(201);
  return (await res.json()) as CreatedBackup;
}

describe('POST /api/v1/admin/backup with backup.keep: 2', () => {
  it('deletes the oldest backups beyond two after each one, answers their names, and leaves other files alone', async () => {
    mkdirSync(backupDir(), { recursive: true, mode: 0o700 });
    const old = backupFileName(Date.parse('2025-01-01T00:00:00.000Z'));
    writeFileSync(join(backupDir(), old), 'an old backup');
    const foreign = ['README.txt', 'perch-before-upgrade.db'];
    for (const name of foreign) writeFileSync(join(backupDir(), name), name);

    const first = await backUp();
    expect(first.pruned).toEqual([]);
    const second = await backUp();
    expect(second.pruned).toEqual([old]);
    const third = await backUp();
    expect(third.pruned).toEqual([first.name]);
    expect(onDisk()).toEqual([...foreign, second.name, third.name].sort());

    const list = (await (await site.call(site.cp.adminToken, 'GET', '/api/v1/admin/backups')).json()) as { backups: { name: string }[] };
    expect(list.backups.map((b) => b.name)).toEqual([third.name, second.name]);
  });

  it('documents the pruned backups in the OpenAPI answer of the operation', async () => {
    const doc = (await (await site.call(null, 'GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, { description?: string; responses: Record<string, { content: Record<string, { schema: { $ref?: string } }> }> }>>;
      components: { schemas: Record<string, { allOf?: { $ref?: string; properties?: Record<string, unknown>; required?: string[] }[] }> };
    };
    const op = doc.paths['/admin/backup']!['post']!;
    expect(op.description).toMatch(/backup\.keep/);
    const ref = op.responses['201']!.content['application/json']!.schema.$ref!;
    // A Backup and its pruned names.
    const parts = doc.components.schemas[ref.split('/').at(-1)!]!.allOf!;
    expect(parts[0]).toEqual({ $ref: '#/components/schemas/Backup' });
    expect(parts[1]!.properties).toHaveProperty('pruned');
    expect(parts[1]!.required).toEqual(['pruned']);
  });
});
