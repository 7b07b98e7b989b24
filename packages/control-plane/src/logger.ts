import { pino, type DestinationStream, type Logger } from 'pino';

/** Keys whose values never reach a log line: at the top of a logged object, and one or two levels down (`req.headers.authorization`). */
export const REDACTED_KEYS = ['password', 'passphrase', 'token', 'claimToken', 'secret', 'authorization', 'Authorization', 'cookie'] as const;
const redactPaths = REDACTED_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

/**
 * Structured JSON logs on stdout (or `destination`). Secrets should never be
 * passed to the logger; if one is, its value is replaced by `[redacted]`.
 */
export function createLogger(level: string, name = 'perch-control-plane', destination?: DestinationStream): Logger {
  const opts = { name, level, base: { pid: process.pid }, redact: { paths: redactPaths, censor: '[redacted]' } };
  return destination ? pino(opts, destination) : pino(opts);
}
