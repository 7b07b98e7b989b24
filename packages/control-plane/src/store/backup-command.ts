import type { Command } from 'commander';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { backupDatabaseFile, controlPlaneDatabaseFile } from './database-backup.js';

/**
 * `perch-control-plane backup <file>`: an online backup of the control
 * plane's SQLite database, found from its config as `serve` finds it. Safe
 * while the control plane runs; prints `{ file, bytes, pages }` as JSON.
 */
export function addBackupCommand(program: Command): void {
  program
    .command('backup <file>')
    .description('write a consistent copy of the control plane database to <file> (a new file), also while it runs')
    .option('-c, --config <file>', 'YAML config file')
    .action(async (file: string, opts: { config?: string }) => {
      const config = loadControlPlaneConfig({ file: opts.config });
      const result = await backupDatabaseFile(controlPlaneDatabaseFile(config.dataDir), file);
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}
