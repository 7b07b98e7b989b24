import { pino, type Logger } from 'pino';

/** Structured JSON logs on stdout; secrets are never passed to the logger. */
export function createLogger(level: string, name = 'perch-control-plane'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}
