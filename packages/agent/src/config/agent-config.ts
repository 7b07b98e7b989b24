import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, claimTokenSchema, deviceIdSchema } from '@perch/shared';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { cameraSchema, resolveCameras, type CameraConfig } from '../camera/camera-config.js';
import type { DecoderCpuSetting } from '../camera/decoder-cpus.js';
import { DEFAULT_DOWNLOAD_WINDOW } from '../deployment/artifact-downloader.js';
import { deploymentConfigSchema, type DeploymentConfig } from '../deployment/deployment-config.js';
import { eventsConfigSchema, type EventsConfig } from '../events/events-config.js';
import { httpConfigSchema, type HttpConfig } from '../http/http-config.js';
import { outboxConfigSchema, type OutboxConfig } from '../outbox/outbox-config.js';

/** Every problem of a config file at once, one `path: message` line each. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`invalid agent config ${file}:\n  ${problems.join('\n  ')}`);
  }
}

// The camera part lives beside the cameras; re-exported here, where standalone mode looks for it.
export { cameraSchema, type CameraConfig, type CameraSource } from '../camera/camera-config.js';

const brokerSchema = z
  .object({
    url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\/.+/, 'broker url: mqtt://, mqtts://, tcp://, ssl://, ws:// or wss://').default('mqtt://127.0.0.1:1883'),
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    passwordFile: z.string().min(1).optional(),
    /**
     * A claim token the box ships with: with no credentials of its own (none
     * configured, none stored in <dataDir>/secrets), it claims them with it.
     */
    claimToken: claimTokenSchema.optional(),
    claimTokenFile: z.string().min(1).optional(),
    /** CA certificates (PEM) the broker's certificate must chain to, for an mqtts:// broker with a private CA; default: the system's */
    caFile: z.string().min(1).optional(),
    /** a client certificate and its key (PEM), for a broker that asks for one */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    connectTimeoutMs: z.number().int().positive().default(10_000),
    keepaliveSeconds: z.number().int().positive().max(65535).default(30),
    reconnect: z
      .object({
        minMs: z.number().int().positive().default(500),
        maxMs: z.number().int().positive().default(30_000),
      })
      .strict()
      .refine((r) => r.maxMs >= r.minMs, { message: 'maxMs must be >= minMs', path: ['maxMs'] })
      .default({ minMs: 500, maxMs: 30_000 }),
  })
  .strict()
  .refine((b) => !(b.password !== undefined && b.passwordFile !== undefined), {
    message: 'give password or passwordFile, not both',
    path: ['passwordFile'],
  })
  .refine((b) => !(b.claimToken !== undefined && b.claimTokenFile !== undefined), {
    message: 'give claimToken or claimTokenFile, not both',
    path: ['claimTokenFile'],
  })
  .refine((b) => (b.certFile === undefined) === (b.keyFile === undefined), { message: 'give certFile and keyFile together', path: ['keyFile'] })
  .refine((b) => (b.caFile === undefined && b.certFile === undefined) || /^(mqtts|ssl|wss):\/\//.test(b.url), {
    message: 'caFile, certFile and keyFile need a TLS url: mqtts://, ssl:// or wss://',
    path: ['url'],
  });

const trustSchema = z
  .object({
    /**
     * The TUF root.json the box is provisioned with (the control plane's
     * `root show`): every key the agent trusts comes from it and the roots
     * that follow it. Read once, on the first start; later roots arrive over MQTT.
     */
    rootFile: z.string().min(1),
  })
  .strict();

/** Enough of a root.json to say early that the file is not one; TUF checks its signatures. */
const rootFileSchema = z.object({
  signed: z.object({ _type: z.literal('root'), version: z.number().int().positive() }),
  signatures: z.array(z.unknown()).min(1),
});

const fileSchema = z
  .object({
    deviceId: deviceIdSchema,
    dataDir: z.string().min(1),
    broker: brokerSchema.default({ url: 'mqtt://127.0.0.1:1883', connectTimeoutMs: 10_000, keepaliveSeconds: 30, reconnect: { minMs: 500, maxMs: 30_000 } }),
    trust: trustSchema,
    ffmpegPath: z.string().min(1).optional(),
    /**
     * Niceness of the ffmpeg processes (0-19): above the agent's, so an
     * inference that is due takes the CPU from a decoder, whose pipe absorbs
     * the short wait. Frames delayed by a starved decoder show as capture delay.
     */
    ffmpegNice: z.number().int().min(0).max(19).default(10),
    /**
     * The CPUs the ffmpeg decoders run on. 'auto': all the agent's CPUs but
     * the last intraOpThreads, left to inference, where at least two are
     * left to the decoders and until they use 70 % of them (see
     * DecoderCpus); 'all': anywhere; a list: those (they must be the agent's).
     */
    decoderCpus: z.union([z.enum(['auto', 'all']), z.array(z.number().int().min(0).max(4095)).min(1)]).default('auto'),
    telemetry: z
      .object({ windowSeconds: z.number().min(0.1).max(3600).default(10) })
      .strict()
      .default({ windowSeconds: 10 }),
    inference: z
      .object({
        intraOpThreads: z.number().int().min(1).max(64).default(1),
        /** frames of several cameras in one run, when the model's batch dimension is dynamic */
        maxBatch: z.number().int().min(1).max(64).default(4),
        /** how long a batch may wait for more cameras' frames */
        maxBatchDelayMs: z.number().min(0).max(1000).default(10),
        /** 'auto': batch only where the model, measured at load on this box, runs a batch at least 20 % cheaper per frame; 'always': whenever frames are there */
        batching: z.enum(['auto', 'always']).default('auto'),
        /** runs handed to the worker at once: 2 prepares the next frame while one runs, 1 takes each frame only when the worker is free */
        pipelineDepth: z.union([z.literal(1), z.literal(2)]).default(2),
        /** onnxruntime's idle threads spin for lower latency, at the cost of CPU ffmpeg needs */
        allowSpinning: z.boolean().default(false),
      })
      .strict()
      .default({ intraOpThreads: 1, maxBatch: 4, maxBatchDelayMs: 10, batching: 'auto', pipelineDepth: 2, allowSpinning: false }),
    cameras: z
      .array(cameraSchema)
      .max(64)
      .default([])
      .refine((cams) => new Set(cams.map((c) => c.id)).size === cams.length, 'camera ids must be unique'),
    download: z
      .object({
        chunkBytes: z.number().int().min(1024).max(MAX_CHUNK_BYTES).default(DEFAULT_CHUNK_BYTES),
        window: z.number().int().min(1).max(64).default(DEFAULT_DOWNLOAD_WINDOW),
        requestTimeoutMs: z.number().int().positive().default(10_000),
        maxRetries: z.number().int().nonnegative().default(5),
      })
      .strict()
      .default({ chunkBytes: DEFAULT_CHUNK_BYTES, window: DEFAULT_DOWNLOAD_WINDOW, requestTimeoutMs: 10_000, maxRetries: 5 }),
    /** models kept on disk: the active one, the one it replaced, and the newest others up to maxModels */
    modelCache: z
      .object({ maxModels: z.number().int().min(2).max(100).default(3) })
      .strict()
      .default({ maxModels: 3 }),
    deployment: deploymentConfigSchema,
    events: eventsConfigSchema,
    http: httpConfigSchema,
    outbox: outboxConfigSchema,
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

type FileConfig = z.infer<typeof fileSchema>;
export type LogLevel = FileConfig['log']['level'];

/** The config with secrets read and every path absolute. */
export interface AgentConfig {
  deviceId: string;
  dataDir: string;
  broker: {
    url: string;
    username: string;
    password: string | undefined;
    /** claims the box's own credentials when it has none (see identity/) */
    claimToken?: string | undefined;
    /** PEM contents of `caFile`, `certFile`, `keyFile`, for mqtt.js */
    tls?: BrokerTls | undefined;
    connectTimeoutMs: number;
    keepaliveSeconds: number;
    reconnect: { minMs: number; maxMs: number };
  };
  trust: { rootFile: string };
  ffmpegPath: string;
  ffmpegNice: number;
  decoderCpus: DecoderCpuSetting;
  telemetry: { windowSeconds: number };
  inference: { intraOpThreads: number; maxBatch: number; maxBatchDelayMs: number; batching: 'auto' | 'always'; pipelineDepth: 1 | 2; allowSpinning: boolean };
  cameras: CameraConfig[];
  download: { chunkBytes: number; window: number; requestTimeoutMs: number; maxRetries: number };
  modelCache: { maxModels: number };
  deployment: DeploymentConfig;
  events: EventsConfig;
  http: HttpConfig;
  outbox: OutboxConfig;
  log: { level: LogLevel };
}

/** What the agent's MQTT connections trust and present over TLS. */
export interface BrokerTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Zod's default for a missing field names types; an installer wants "Required". */
const errorMap: z.core.$ZodErrorMap = (issue) => (issue.code === 'invalid_type' && issue.input === undefined ? 'Required' : undefined);

function issuesToProblems(error: z.ZodError, prefix = ''): string[] {
  return error.issues.map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    return `${path === '' ? '(root)' : path}: ${issue.message}`;
  });
}

export function defaultFfmpegPath(): string {
  const fromEnv = process.env.PERCH_FFMPEG_PATH;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  // Loaded lazily: the package resolves a platform binary at import time.
  const installer: unknown = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg');
  const parsed = z.object({ path: z.string().min(1) }).safeParse(installer);
  if (!parsed.success) throw new Error('@ffmpeg-installer/ffmpeg gave no ffmpeg path; set ffmpegPath or PERCH_FFMPEG_PATH');
  return parsed.data.path;
}

/** Validates an already parsed document; `baseDir` anchors relative paths. */
export async function resolveAgentConfig(raw: unknown, baseDir: string, file = '(inline)'): Promise<AgentConfig> {
  const parsed = fileSchema.safeParse(raw ?? {}, { error: errorMap });
  if (!parsed.success) throw new ConfigError(file, issuesToProblems(parsed.error));
  const cfg = parsed.data;
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const problems: string[] = [];

  let password = cfg.broker.password;
  if (cfg.broker.passwordFile !== undefined) {
    try {
      // A trailing newline is how editors save files, never part of a secret.
      password = (await readFile(at(cfg.broker.passwordFile), 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`broker.passwordFile: cannot read ${at(cfg.broker.passwordFile)}: ${(err as Error).message}`);
    }
  }

  let claimToken = cfg.broker.claimToken;
  if (cfg.broker.claimTokenFile !== undefined) {
    const file = at(cfg.broker.claimTokenFile);
    try {
      const text = (await readFile(file, 'utf8')).trim();
      const r = claimTokenSchema.safeParse(text);
      if (r.success) claimToken = r.data;
      else problems.push(...issuesToProblems(r.error, `broker.claimTokenFile(${file})`));
    } catch (err) {
      problems.push(`broker.claimTokenFile: cannot read ${file}: ${(err as Error).message}`);
    }
  }

  const tls: BrokerTls = {};
  for (const [field, key] of [['caFile', 'ca'], ['certFile', 'cert'], ['keyFile', 'key']] as const) {
    const name = cfg.broker[field];
    if (name === undefined) continue;
    const file = at(name);
    try {
      const pem = await readFile(file);
      if (!pem.includes('-----BEGIN ')) problems.push(`broker.${field}: ${file} is not PEM`);
      tls[key] = pem;
    } catch (err) {
      problems.push(`broker.${field}: cannot read ${file}: ${(err as Error).message}`);
    }
  }

  const rootFile = at(cfg.trust.rootFile);
  try {
    const text = await readFile(rootFile, 'utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`malformed JSON: ${(err as Error).message}`);
    }
    const r = rootFileSchema.safeParse(json, { error: errorMap });
    if (!r.success) problems.push(...issuesToProblems(r.error, `trust.rootFile(${rootFile})`));
  } catch (err) {
    problems.push(`trust.rootFile: cannot use ${rootFile}: ${(err as Error).message}`);
  }

  let ffmpegPath = '';
  try {
    ffmpegPath = cfg.ffmpegPath !== undefined ? at(cfg.ffmpegPath) : defaultFfmpegPath();
  } catch (err) {
    problems.push(`ffmpegPath: ${(err as Error).message}`);
  }

  const cameras = await resolveCameras(cfg.cameras, at);
  problems.push(...cameras.problems);

  if (problems.length > 0) throw new ConfigError(file, problems);
  return {
    deviceId: cfg.deviceId,
    dataDir: at(cfg.dataDir),
    broker: {
      url: cfg.broker.url,
      username: cfg.broker.username ?? cfg.deviceId,
      password,
      claimToken,
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
      connectTimeoutMs: cfg.broker.connectTimeoutMs,
      keepaliveSeconds: cfg.broker.keepaliveSeconds,
      reconnect: cfg.broker.reconnect,
    },
    trust: { rootFile },
    ffmpegPath,
    ffmpegNice: cfg.ffmpegNice,
    decoderCpus: cfg.decoderCpus,
    telemetry: cfg.telemetry,
    inference: cfg.inference,
    cameras: cameras.cameras,
    download: cfg.download,
    modelCache: cfg.modelCache,
    deployment: cfg.deployment,
    events: { ...cfg.events, snapshots: { ...cfg.events.snapshots, dir: at(cfg.events.snapshots.dir ?? join(cfg.dataDir, 'snapshots')) } },
    http: cfg.http,
    outbox: cfg.outbox,
    log: cfg.log,
  };
}

/** Reads a YAML config file; throws ConfigError listing every problem. */
export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    if (err instanceof YAMLParseError) throw new ConfigError(path, [`YAML: ${err.message}`]);
    throw err;
  }
  return resolveAgentConfig(raw, dirname(path), path);
}
