import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { LogLevel } from '../config/agent-config.js';

export type Logger = PinoLogger;

/** JSON lines on stdout (or a given stream): what journald and log shippers expect. */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'perch-agent' } };
  return destination ? pino(options, destination) : pino(options);
}
