#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { Agent } from './agent.js';
import { redactSecrets } from './camera/url-credentials.js';
import { AGENT_VERSION } from './agent-version.js';
import { ConfigError, loadAgentConfig } from './config/agent-config.js';
import { createLogger, type Logger } from './log/logger.js';
import { parseRunOptions, type RawRunOptions } from './standalone/run-options.js';
import { StandaloneRun } from './standalone/standalone-run.js';

/** Usage errors (bad flags, bad config) exit with 2, as config errors always have. */
const USAGE = 2;

/**
 * SIGINT/SIGTERM stop `stop` once and exit 0; a stuck shutdown must not keep
 * a service manager waiting for ever. Started with an IPC channel (by the
 * demo, tests, benchmarks), the agent also stops when that channel closes:
 * a parent killed outright cannot send a signal, and its agent would
 * otherwise run on as an orphan.
 */
function stopOnSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    setTimeout(() => process.exit(1), 10_000).unref();
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err: err.message }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  if (process.channel) {
    process.channel.unref();
    process.once('disconnect', () => shutdown('parent exited'));
  }
}

async function runAgent(configFile: string): Promise<void> {
  let config;
  try {
    config = await loadAgentConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(USAGE);
    }
    throw err;
  }
  const log = createLogger(config.log.level);
  const agent = new Agent(config, log);
  stopOnSignals(log, () => agent.stop());
  try {
    await agent.start();
  } catch (err) {
    log.fatal({ err: (err as Error).message, stack: (err as Error).stack }, 'agent failed to start');
    process.exit(1);
  }
}

async function runStandalone(raw: RawRunOptions, extraArgs: string[]): Promise<void> {
  const parsed = await parseRunOptions(raw, extraArgs);
  if (!parsed.ok) {
    process.stderr.write(`perch-agent run: ${parsed.problems.length} problem${parsed.problems.length === 1 ? '' : 's'}:\n  ${parsed.problems.join('\n  ')}\n`);
    process.exit(USAGE);
  }
  const opts = parsed.options;
  // Logs go to stderr, so stdout carries only the live lines.
  const log = createLogger(opts.logLevel, process.stderr);
  const run = new StandaloneRun(opts, log, (line) => process.stdout.write(`${line}\n`));
  stopOnSignals(log, () => run.stop());
  try {
    await run.start();
  } catch (err) {
    process.stderr.write(`perch-agent run: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const { input, labels } = opts.metadata;
  const http = run.endpoints?.address;
  process.stdout.write(
    `running ${run.model} on ${redactSecrets(raw.camera ?? '?')}: ${input.width}x${input.height} ${input.layout} ${input.channelOrder}, ${labels.length} labels` +
      `${http ? `; http://${http.host}:${http.port}/metrics` : ''}; Ctrl-C stops\n`,
  );
}

const program = new Command()
  .name('perch-agent')
  .description('Perch edge agent: cameras -> ONNX inference -> statistics over MQTT')
  .version(AGENT_VERSION)
  // Root options only before a subcommand: `run --config` is an error, not a silent mix.
  .enablePositionalOptions()
  .exitOverride()
  .option('-c, --config <file>', 'agent config (YAML); runs the agent')
  .action(async (opts: { config?: string }) => {
    if (opts.config === undefined) {
      return program.error("error: required option '-c, --config <file>' not specified (or use a command: perch-agent run --help)", { exitCode: USAGE });
    }
    await runAgent(opts.config);
  });

program
  .command('run')
  .description('run a model on one camera without a control plane, printing live predictions, fps and frame age')
  .option('--model <file>', 'ONNX image classifier')
  .option('--camera <source>', 'video file, rtsp://…, http(s)://… (MJPEG), /dev/videoN, synthetic[:pattern]')
  .option('--metadata <file>', "the model's metadata as JSON (labels, input, normalization, output), as the registry takes it")
  .option('--labels <a,b,c>', 'class names in output order (instead of --metadata)')
  .option('--size <WxH>', "model input size (default: from the model's input shape)")
  .option('--layout <NCHW|NHWC>', "input layout (default: from the model's input shape)")
  .option('--channels <RGB|BGR>', 'channel order (default RGB)')
  .option('--resize <mode>', 'stretch, letterbox or centre-crop (default stretch)')
  .option('--mean <r,g,b>', 'normalisation mean, after --scale (default 0)')
  .option('--std <r,g,b>', 'normalisation std (default 1)')
  .option('--scale <n>', 'pixel scale, e.g. 1/255 (the default)')
  .option('--input-name <name>', "model input (default: the model's only input)")
  .option('--output-name <name>', "model output (default: the model's only output)")
  .option('--output-kind <kind>', 'probabilities or logits (default probabilities)')
  .option('--fps <n>', 'frames per second to read (default 5)')
  .option('--threads <n>', 'onnxruntime intra-op threads (default 1)')
  .option('--http <[host:]port>', 'serve /healthz, /metrics and /snapshot/camera (host default 127.0.0.1)')
  .option('--ffmpeg <path>', 'ffmpeg binary (default: PERCH_FFMPEG_PATH, else the bundled one)')
  .option('--log-level <level>', 'log level of the JSON log on stderr (default warn)')
  // Unknown flags are collected and reported with every other problem, not one at a time.
  .allowUnknownOption()
  .allowExcessArguments()
  .action(async (opts: RawRunOptions, cmd: Command) => runStandalone(opts, cmd.args));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // exitOverride: commander has already printed its message.
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : USAGE);
  throw err;
}
