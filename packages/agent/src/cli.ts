#!/usr/bin/env node
import { Command } from 'commander';
import { Agent } from './agent.js';
import { AGENT_VERSION } from './agent-version.js';
import { ConfigError, loadAgentConfig } from './config/agent-config.js';
import { createLogger } from './log/logger.js';

const program = new Command()
  .name('perch-agent')
  .description('Perch edge agent: cameras -> ONNX inference -> statistics over MQTT')
  .version(AGENT_VERSION)
  .requiredOption('-c, --config <file>', 'agent config (YAML)')
  .action(async (opts: { config: string }) => {
    let config;
    try {
      config = await loadAgentConfig(opts.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const log = createLogger(config.log.level);
    const agent = new Agent(config, log);
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      // A stuck shutdown must not keep a service manager waiting for ever.
      setTimeout(() => process.exit(1), 10_000).unref();
      agent.stop().then(
        () => process.exit(0),
        (err: Error) => {
          log.error({ err: err.message }, 'stop failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    try {
      await agent.start();
    } catch (err) {
      log.fatal({ err: (err as Error).message, stack: (err as Error).stack }, 'agent failed to start');
      process.exit(1);
    }
  });

await program.parseAsync(process.argv);
