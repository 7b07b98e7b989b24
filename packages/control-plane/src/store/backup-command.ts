import { join } from 'node:path';
import type { Command } from 'commander';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { BackupFolder } from './backup-folder.js';
import { backupDatabaseFile, controlPlaneDatabaseFile } from './database-backup.js';

/**
 * `perch-control-plane backup [file]`: an online backup of the control
 * plane's SQLite database, found from its config as `serve` finds it. Safe
 * while the control plane runs. With `file`, writes that new file and
 * prints `{ file, bytes, pages }`; without, writes into `<dataDir>/backups`
 * as the API does, deletes the oldest beyond `backup.keep`, and prints
 * `{ file, bytes, createdAt, pruned }`. A file the caller named is never pruned.
 */
export function addBackupCommand(program: Command): void {
  program
    .command('backup [file]')
    .description('write a consistent copy of the control plane database to [file] (a new file), or into <dataDir>/backups keeping backup.keep; also while it runs')
    .option('-c, --config <file>', 'YAML config file')
    .action(async (file: string | undefined, opts: { config?: string }) => {
      const config = loadControlPlaneConfig({ file: opts.config });
      const source = controlPlaneDatabaseFile(config.dataDir);
      if (file !== undefined) {
        const result = await backupDatabaseFile(source, file);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const folder = new BackupFolder(join(config.dataDir, 'backups'), (target) => backupDatabaseFile(source, target), { keep: config.backup.keep });
      const made = await folder.create();
      const result = { file: join(folder.dir, made.name), bytes: made.bytes, createdAt: new Date(made.createdAt).toISOString(), pruned: made.pruned };
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      if (made.pruneError !== null) process.stderr.write(`warning: an older backup could not be deleted (${made.pruneError}); the next backup tries again\n`);
    });
}
