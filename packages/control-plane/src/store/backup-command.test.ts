import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { controlPlaneDatabaseFile } from './database-backup.js';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const run = promisify(execFile);

let dir: string;
let dataDir: string;
let configFile: string;

interface Printed {
  file: string;
  bytes: number;
  createdAt: string;
  pruned: string[];
}

async function backup(...args: string[]): Promise<Printed> {
  const out = await run(process.execPath, ['--import', 'tsx', CLI, 'backup', ...args, '--config', configFile], { env: { ...process.env, PERCH_LOG_LEVEL: 'silent' } });
  return JSON.parse(out.stdout) as Printed;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'perch-backup-command-'));
  dataDir = join(dir, 'cp');
  // A control plane's database, as `serve` leaves it.
  const db = openDatabase(controlPlaneDatabaseFile(dataDir));
  db.exec("CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('from the live database')");
  db.close();
  configFile = join(dir, 'control-plane.yaml');
  writeFileSync(configFile, `dataDir: ${dataDir}\nbackup:\n  keep: 2\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('perch-control-plane backup without a file', () => {
  it('writes into <dataDir>/backups and keeps backup.keep of them; a file named on the command line is neither pruned nor counted', async () => {
    const named = join(dir, 'before-upgrade.db');
    const made: Printed[] = [];
    for (let i = 0; i < 3; i++) made.push(await backup());
    await backup(named);
    made.push(await backup());

    const names = made.map((m) => m.file.split('/').at(-1)!);
    expect(made.map((m) => m.file)).toEqual(names.map((n) => join(dataDir, 'backups', n)));
    expect(made.map((m) => m.pruned)).toEqual([[], [], [names[0]], [names[1]]]);
    expect(readdirSync(join(dataDir, 'backups')).sort()).toEqual(names.slice(2).sort());
    expect(readdirSync(dir).sort()).toEqual(['before-upgrade.db', 'control-plane.yaml', 'cp']);

    const copy = new Database(made.at(-1)!.file, { readonly: true, fileMustExist: true });
    try {
      expect(copy.prepare('SELECT v FROM marker').pluck().get()).toBe('from the live database');
    } finally {
      copy.close();
    }
  }, 60_000);

  it('refuses a bad backup.keep before writing anything, naming the key', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `dataDir: ${dataDir}\nbackup:\n  keep: -1\n`);
    const before = readdirSync(join(dataDir, 'backups')).sort();
    const err = await run(process.execPath, ['--import', 'tsx', CLI, 'backup', '--config', bad]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/backup\.keep/);
    expect(readdirSync(join(dataDir, 'backups')).sort()).toEqual(before);
  }, 30_000);
});
