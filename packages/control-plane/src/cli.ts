#!/usr/bin/env node
import { Command } from 'commander';
import { addTokenCommands } from './access/token-commands.js';
import { loadControlPlaneConfig } from './config/control-plane-config.js';
import { ControlPlane } from './control-plane.js';
import { createLogger } from './logger.js';
import { addRolloutCommands } from './rollouts/rollout-commands.js';
import { addBackupCommand } from './store/backup-command.js';
import { addTrustCommands } from './trust/trust-commands.js';

const program = new Command('perch-control-plane').description('Perch control plane: registry, broker, fleet state and telemetry');

program
  .command('serve')
  .description('run the control plane (embedded MQTT broker, SQLite, REST API)')
  .option('-c, --config <file>', 'YAML config file (defaults apply without one)')
  .action(async (opts: { config?: string }) => {
    const config = loadControlPlaneConfig({ file: opts.config });
    const log = createLogger(config.log.level);
    const cp = new ControlPlane(config, log);
    await cp.start();
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      cp.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

addTrustCommands(program);
addTokenCommands(program);
addBackupCommand(program);
addRolloutCommands(program);

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`perch-control-plane: ${(err as Error).message}\n`);
  process.exit(1);
});
