import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DEVICE_TOPIC_KINDS, formatZodError } from '@perch/shared';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_BROKER_LIMITS } from '../broker/broker-limits.js';
import { brokerTlsProblems, DEFAULT_MQTTS_PORT } from '../broker/broker-tls.js';
import { CONTROL_PLANE_USERNAME as MOSQUITTO_CONTROL_PLANE_USERNAME } from '../broker/mosquitto-acls.js';
import { PayloadLimits } from '../broker/payload-limits.js';
import { DEFAULT_PUBLISH_RATE } from '../broker/publish-rate-limiter.js';
import { rolloutConfigSchema } from '../rollouts/rollout-config.js';
import { telemetryConfigSchema } from '../telemetry/telemetry-config.js';

const port = z.coerce.number().int().min(0).max(65535);
const byteCount = z.number().int().positive();
const fromDeviceKinds = Object.entries(DEVICE_TOPIC_KINDS).flatMap(([kind, direction]) => (direction === 'from-device' ? [kind] : []));

/** The embedded broker's limits on clients other than the control plane; broker/broker-limits.ts says what each does. */
const mqttLimits = z
  .object({
    /** payload bytes per device-to-cloud topic kind, over the defaults (payload-limits.ts); `default`: any other topic */
    maxPayloadBytes: z.partialRecord(z.enum(['default', ...fromDeviceKinds]), byteCount).default({}),
    /** a token bucket per client id; null: no rate limit */
    rate: z
      .object({
        messagesPerSecond: z.number().positive().default(DEFAULT_PUBLISH_RATE.messagesPerSecond),
        burstMessages: z.number().int().positive().default(DEFAULT_PUBLISH_RATE.burstMessages),
        bytesPerSecond: byteCount.default(DEFAULT_PUBLISH_RATE.bytesPerSecond),
        burstBytes: byteCount.default(DEFAULT_PUBLISH_RATE.burstBytes),
        maxDelayMs: byteCount.default(DEFAULT_PUBLISH_RATE.maxDelayMs),
      })
      .strict()
      .nullable()
      .prefault({}),
    maxOutgoingBytes: byteCount.default(DEFAULT_BROKER_LIMITS.maxOutgoingBytes),
    drainTimeoutMs: byteCount.default(DEFAULT_BROKER_LIMITS.drainTimeoutMs),
  })
  .strict()
  .superRefine((l, ctx) => {
    const largest = new PayloadLimits(l.maxPayloadBytes).largest;
    if (l.rate && l.rate.burstBytes < largest) {
      ctx.addIssue({ code: 'custom', path: ['rate', 'burstBytes'], message: `must be at least the largest payload allowed (${largest} bytes), or a QoS 0 publish that size could never pass` });
    }
  })
  .prefault({});

/**
 * An external broker (Mosquitto 2, docs/deploy-external-broker.md) instead
 * of the embedded aedes: the control plane is then one of its clients, with
 * a persistent session, and tells it (dynamic security) of every device
 * credential and claim token. The files are checked when the config is loaded.
 */
const mqttExternal = z
  .object({
    url: z.string().regex(/^(mqtts?|tcp|ssl):\/\/.+/, 'mqtt://, mqtts://, tcp:// or ssl://'),
    /** the control plane's broker login; `perch-control-plane mosquitto-config` makes this one */
    username: z.string().min(1).default(MOSQUITTO_CONTROL_PLANE_USERNAME),
    passwordFile: z.string().min(1),
    /** the bus's client id; default: made once and kept secret in <dataDir>/secrets/mqtt-client-id (see external-client-id.ts) */
    clientId: z.string().regex(/^[A-Za-z0-9._-]{8,128}$/, '8-128 of A-Z a-z 0-9 . _ -').optional(),
    /** CA certificates (PEM) the broker's certificate chains to, for mqtts:// with a private CA */
    caFile: z.string().min(1).optional(),
    /** a client certificate and its key (PEM), for a listener with `require_certificate` */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    /** keep the broker's devices and claim tokens in step over Mosquitto's dynamic security API; false: the broker's auth is managed elsewhere */
    dynsec: z.boolean().default(true),
    /** subscribe through the shared group `perch-cp`, for several control planes on one broker (see the deploy doc first) */
    shared: z.boolean().default(false),
  })
  .strict()
  .refine((e) => (e.certFile === undefined) === (e.keyFile === undefined), { message: 'give certFile and keyFile together', path: ['keyFile'] });

/** MQTT over TLS (mqtts) on `port`; plain MQTT then listens on loopback only. The files are checked when the config is loaded. */
const mqttTls = z
  .object({ certFile: z.string().min(1), keyFile: z.string().min(1), caFile: z.string().min(1).optional(), port: port.default(DEFAULT_MQTTS_PORT) })
  .strict();

export const controlPlaneConfigSchema = z
  .object({
    dataDir: z.string().min(1).default('.perch/control-plane'),
    mqtt: z
      .object({ host: z.string().min(1).default('0.0.0.0'), port: port.default(1883), tls: mqttTls.optional(), limits: mqttLimits, external: mqttExternal.optional() })
      .strict()
      .superRefine((m, ctx) => {
        if (m.external && m.tls) ctx.addIssue({ code: 'custom', path: ['tls'], message: "the embedded broker's TLS listener; with mqtt.external the broker's own config sets TLS" });
      })
      .prefault({}),
    http: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(8080),
        maxUploadBytes: z.number().int().positive().default(256 * 1024 * 1024),
        /** a file holding the first admin API token (32+ characters); without it one is generated into <dataDir>/secrets/admin-token */
        adminTokenFile: z.string().min(1).optional(),
        /** GET /metrics: `token` needs a bearer token of at least viewer; `none` is for a scraper on a private network */
        metricsAuth: z.enum(['token', 'none']).default('token'),
      })
      .strict()
      .prefault({}),
    devices: z
      .object({
        /**
         * The default claim token (unlimited uses, no expiry), which boxes claim
         * their own credentials with; when neither is given one is generated
         * into <dataDir>/secrets/claim-token. Revocable like any claim token.
         */
        claimToken: z.string().min(16).optional(),
        claimTokenFile: z.string().min(1).optional(),
      })
      .strict()
      .refine((d) => !(d.claimToken && d.claimTokenFile), 'give devices.claimToken or devices.claimTokenFile, not both')
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
    backup: z
      .object({
        /** backups kept in <dataDir>/backups: after each one the oldest beyond this are deleted; 0 keeps every one */
        keep: z.number().int().min(0).default(7),
      })
      .strict()
      .prefault({}),
    /** ingest batching, sequence gaps, presence, retention (telemetry/telemetry-config.ts) */
    telemetry: telemetryConfigSchema,
    /** staged rollouts: the engine's tick, webhooks for rollout events (rollouts/rollout-config.ts) */
    rollouts: rolloutConfigSchema,
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
    if (cfg.devices.claimTokenFile) cfg.devices.claimTokenFile = resolve(base, cfg.devices.claimTokenFile);
    if (cfg.http.adminTokenFile) cfg.http.adminTokenFile = resolve(base, cfg.http.adminTokenFile);
    for (const hook of cfg.rollouts.webhooks) if (hook.secretFile) hook.secretFile = resolve(base, hook.secretFile);
    const tls = cfg.mqtt.tls;
    if (tls) {
      tls.certFile = resolve(base, tls.certFile);
      tls.keyFile = resolve(base, tls.keyFile);
      if (tls.caFile) tls.caFile = resolve(base, tls.caFile);
    }
    const external = cfg.mqtt.external;
    if (external) {
      external.passwordFile = resolve(base, external.passwordFile);
      if (external.caFile) external.caFile = resolve(base, external.caFile);
      if (external.certFile) external.certFile = resolve(base, external.certFile);
      if (external.keyFile) external.keyFile = resolve(base, external.keyFile);
    }
  }
  const problems = [...(cfg.mqtt.tls ? brokerTlsProblems(cfg.mqtt.tls) : []), ...(cfg.mqtt.external ? externalBrokerFileProblems(cfg.mqtt.external) : [])];
  if (problems.length > 0) throw new ConfigError(source, problems.join('; '));
  return cfg;
}

/** Every problem with `mqtt.external`'s files, each named by its config path. */
function externalBrokerFileProblems(external: { passwordFile: string; caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined }): string[] {
  const problems: string[] = [];
  try {
    if (readSecretFile(external.passwordFile) === '') problems.push(`mqtt.external.passwordFile: ${external.passwordFile} is empty`);
  } catch (err) {
    problems.push(`mqtt.external.passwordFile: cannot read ${external.passwordFile}: ${(err as Error).message}`);
  }
  for (const key of ['caFile', 'certFile'] as const) {
    const file = external[key];
    if (file === undefined) continue;
    try {
      new X509Certificate(readFileSync(file));
    } catch (err) {
      problems.push(`mqtt.external.${key}: ${file} is not a readable PEM certificate (${(err as Error).message})`);
    }
  }
  if (external.keyFile !== undefined) {
    try {
      createPrivateKey(readFileSync(external.keyFile));
    } catch (err) {
      problems.push(`mqtt.external.keyFile: ${external.keyFile} is not a readable PEM private key (${(err as Error).message})`);
    }
  }
  return problems;
}

export function readSecretFile(file: string): string {
  return readFileSync(file, 'utf8').trim();
}
