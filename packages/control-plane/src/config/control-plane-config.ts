import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatZodError } from '@perch/shared';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);

export const controlPlaneConfigSchema = z
  .object({
    dataDir: z.string().min(1).default('.perch/control-plane'),
    mqtt: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: port.default(1883) })
      .strict()
      .default({ host: '0.0.0.0', port: 1883 }),
    http: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(8080),
        maxUploadBytes: z.number().int().positive().default(256 * 1024 * 1024),
      })
      .strict()
      .default({ host: '0.0.0.0', port: 8080, maxUploadBytes: 256 * 1024 * 1024 }),
    devices: z
      .object({
        /** the fleet's device token; when neither is given one is generated into the data directory */
        token: z.string().min(16).optional(),
        tokenFile: z.string().min(1).optional(),
      })
      .strict()
      .refine((d) => !(d.token && d.tokenFile), 'give devices.token or devices.tokenFile, not both')
      .default({}),
    artifacts: z
      .object({
        /**
         * Bytes per second of model chunks to one device, and to all devices
         * together; null is unlimited. A device's `download.requestTimeoutMs`
         * only counts while no chunk of its download arrives, so a slow
         * limit delays downloads but does not fail them.
         */
        maxBytesPerSecondPerDevice: z.number().int().positive().nullable().default(null),
        maxBytesPerSecondTotal: z.number().int().positive().nullable().default(null),
      })
      .strict()
      .default({ maxBytesPerSecondPerDevice: null, maxBytesPerSecondTotal: null }),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type ControlPlaneConfig = z.infer<typeof controlPlaneConfigSchema>;
export type ControlPlaneConfigInput = z.input<typeof controlPlaneConfigSchema>;

export class ConfigError extends Error {
  constructor(source: string, details: string) {
    super(`invalid control plane config (${source}): ${details}`);
    this.name = 'ConfigError';
  }
}

/** Environment overrides (PERCH_DATA_DIR, PERCH_{MQTT,HTTP}_{HOST,PORT}, PERCH_LOG_LEVEL), so a service unit can move ports and data without a file. */
function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, Record<string, unknown> | string> = {};
  if (env.PERCH_DATA_DIR) out.dataDir = env.PERCH_DATA_DIR;
  const mqtt: Record<string, unknown> = {};
  const http: Record<string, unknown> = {};
  if (env.PERCH_MQTT_HOST) mqtt.host = env.PERCH_MQTT_HOST;
  if (env.PERCH_MQTT_PORT) mqtt.port = env.PERCH_MQTT_PORT;
  if (env.PERCH_HTTP_HOST) http.host = env.PERCH_HTTP_HOST;
  if (env.PERCH_HTTP_PORT) http.port = env.PERCH_HTTP_PORT;
  if (Object.keys(mqtt).length > 0) out.mqtt = mqtt;
  if (Object.keys(http).length > 0) out.http = http;
  if (env.PERCH_LOG_LEVEL) out.log = { level: env.PERCH_LOG_LEVEL };
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/**
 * Config from an optional YAML file, then the environment, then `overrides`.
 * Every problem is reported at once, each with its path. Relative paths in a
 * file resolve against the file's folder.
 */
export function loadControlPlaneConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ControlPlaneConfigInput } = {}): ControlPlaneConfig {
  let fileValues: Record<string, unknown> = {};
  const source = opts.file ?? 'defaults';
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new ConfigError(source, `cannot read: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text) ?? {};
    } catch (err) {
      throw new ConfigError(source, `not valid YAML: ${(err as Error).message}`);
    }
    if (!isPlainObject(parsed)) throw new ConfigError(source, 'the top level must be a mapping');
    fileValues = parsed;
  }
  const merged = deepMerge(deepMerge(fileValues, fromEnv(opts.env ?? process.env)), (opts.overrides ?? {}) as Record<string, unknown>);
  const r = controlPlaneConfigSchema.safeParse(merged);
  if (!r.success) throw new ConfigError(source, formatZodError(r.error));
  const cfg = r.data;
  if (opts.file) {
    const base = dirname(resolve(opts.file));
    cfg.dataDir = resolve(base, cfg.dataDir);
    if (cfg.devices.tokenFile) cfg.devices.tokenFile = resolve(base, cfg.devices.tokenFile);
  }
  return cfg;
}

export function readSecretFile(file: string): string {
  return readFileSync(file, 'utf8').trim();
}
