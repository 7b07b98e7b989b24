import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { connect, type MqttClient } from 'mqtt';
import {
  allDevicesFilter,
  chunkBytes,
  chunkRequestSchema,
  metadataRequestSchema,
  tufTargetOf,
  DEFAULT_CHUNKING,
  encodeChunkManifest,
  makeChunkManifest,
  decodeJson,
  deviceTopic,
  encodeChunkFrame,
  encodeJson,
  modelTargetPath,
  parseDeviceTopic,
  signEnvelope,
  type ChunkHeader,
  type ChunkingParams,
  type ChunkManifest,
  type ChunkManifestRef,
  type ChunkRequest,
  type DesiredState,
  type ModelGolden,
  type ModelMetadata,
  type ModelTarget,
  type SignedDesiredState,
  type SigningKey,
} from '@perch/shared';
import { MetadataServer } from '../../../control-plane/src/trust/metadata-server.js';
import { TufRepository, tufRepositoryPaths } from '../../../control-plane/src/trust/tuf-repository.js';

/** What the double answers to one request; by default the honest chunk. */
export type ChunkAnswer = { header: ChunkHeader; data: Buffer } | null;
export type Tamper = (req: ChunkRequest, honest: { header: ChunkHeader; data: Buffer }) => ChunkAnswer;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function inOneYear(): string {
  return new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString();
}

/**
 * Plays the control plane's part over a real broker: runs the control
 * plane's own TUF repository in a temp dir (signed targets, the `desired`
 * role's key) and answers metadata and chunk requests the way the real one
 * does (one message per request on the device's own topic, QoS 1).
 * `tamper` lets a test corrupt or withhold chunk answers.
 */
export class ControlPlaneDouble {
  private client: MqttClient | null = null;
  readonly artifacts = new Map<string, Buffer>();
  readonly requests: ChunkRequest[] = [];
  tamper: Tamper | null = null;

  private readonly dir = mkdtempSync(join(tmpdir(), 'perch-cp-double-'));
  /** how far behind the repository's clock runs: metadata signed "days ago" has expired for the device */
  readonly clock = { behindMs: 0 };
  readonly repository = new TufRepository({ ...tufRepositoryPaths(this.dir), now: () => new Date(Date.now() - this.clock.behindMs), log: pino({ level: 'silent' }) });
  /** the root.json an agent is provisioned with (its `trust.rootFile`), written by start() */
  readonly rootFile = join(this.dir, 'root.json');
  private readonly metadata = new MetadataServer(this.repository, { publish: (topic, payload, opts) => this.mqtt().publishAsync(topic, payload, opts).then(() => undefined) }, pino({ level: 'silent' }));
  /** targets signTarget made, added to the signed targets before the next desired state goes out */
  private unlisted: ModelTarget[] = [];

  constructor(
    private readonly url: string,
    private readonly credentials?: { username: string; password: string },
  ) {}

  async start(): Promise<void> {
    await this.repository.open();
    writeFileSync(this.rootFile, JSON.stringify(await this.repository.currentRoot()));
    const client = await connectAsync(this.url, 'control-plane-double', this.credentials);
    this.client = client;
    client.on('message', (topic, payload) => this.onRequest(topic, payload));
    await client.subscribeAsync([allDevicesFilter('artifact/request'), allDevicesFilter('metadata/request')], { qos: 1 });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
    this.client = null;
    await this.repository.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The key of the `desired` role: what signs desired states unless a test says otherwise. */
  get key(): SigningKey {
    const [key] = this.repository.desiredSigners();
    if (!key) throw new Error('control plane double not started');
    return key;
  }

  addArtifact(bytes: Buffer): string {
    const hash = sha256(bytes);
    this.artifacts.set(hash, bytes);
    return hash;
  }

  /** Adds an artifact and its chunk manifest, served like any artifact, as the registry stores them. */
  addChunked(bytes: Buffer, params: ChunkingParams = DEFAULT_CHUNKING): { sha256: string; manifest: ChunkManifest; manifestBytes: Buffer; ref: ChunkManifestRef } {
    const hash = this.addArtifact(bytes);
    const manifest = makeChunkManifest({ sha256: hash, length: bytes.length }, params, chunkBytes(bytes, params));
    const manifestBytes = encodeChunkManifest(manifest);
    return { sha256: hash, manifest, manifestBytes, ref: { sha256: this.addArtifact(manifestBytes), length: manifestBytes.length } };
  }

  signTarget(
    bytes: Buffer,
    metadata: ModelMetadata,
    /** golden: the golden input and output, as the registry adds them (test-support/golden.ts computes them); listed: false leaves it out of the signed targets (a model nobody signed) */
    opts: { name?: string; version?: string; listed?: boolean; length?: number; sha256?: string; chunkManifest?: ChunkManifestRef; golden?: ModelGolden; createdAt?: string } = {},
  ): ModelTarget {
    const name = opts.name ?? 'tiny';
    const version = opts.version ?? '1';
    const target: ModelTarget = {
      path: modelTargetPath(name, version),
      length: opts.length ?? bytes.length,
      hashes: { sha256: opts.sha256 ?? sha256(bytes) },
      custom: { name, version, format: 'onnx', metadata, createdAt: opts.createdAt ?? new Date().toISOString(), ...(opts.chunkManifest ? { chunkManifest: opts.chunkManifest } : {}), ...(opts.golden ? { golden: opts.golden } : {}) },
    };
    if (opts.listed !== false) this.unlisted.push(target);
    return target;
  }

  /** Signs the targets made so far into the TUF targets (publishDesired does it too). */
  async listTargets(): Promise<void> {
    const pending = this.unlisted;
    this.unlisted = [];
    for (const t of pending) await this.repository.addTarget(tufTargetOf(t));
  }

  desiredState(
    deviceId: string,
    generation: number,
    active: ModelTarget | null,
    /** shadow: a challenger to run beside `active` (shadow mode), on shadowSampleRate of its frames */
    opts: { key?: SigningKey; expires?: string; rollback?: boolean; shadow?: ModelTarget | null; shadowSampleRate?: number } = {},
  ): SignedDesiredState {
    const desired: DesiredState = {
      _type: 'desired-state',
      spec_version: '1.0',
      version: generation,
      expires: opts.expires ?? inOneYear(),
      deviceId,
      generation,
      issuedAt: new Date().toISOString(),
      active,
      ...(opts.rollback ? { rollback: true } : {}),
      ...(opts.shadow !== undefined ? { shadow: opts.shadow } : {}),
      ...(opts.shadowSampleRate !== undefined ? { shadowSampleRate: opts.shadowSampleRate } : {}),
    };
    return signEnvelope(desired, [opts.key ?? this.key]);
  }

  async publishDesired(deviceId: string, payload: SignedDesiredState | Buffer | string): Promise<void> {
    await this.listTargets();
    const body = Buffer.isBuffer(payload) ? payload : typeof payload === 'string' ? Buffer.from(payload) : encodeJson(payload);
    await this.mqtt().publishAsync(deviceTopic(deviceId, 'desired'), body, { qos: 1, retain: true });
  }

  async publishRaw(topic: string, payload: Buffer | string): Promise<void> {
    await this.mqtt().publishAsync(topic, payload, { qos: 1 });
  }

  private mqtt(): MqttClient {
    if (!this.client) throw new Error('control plane double not started');
    return this.client;
  }

  private onRequest(topic: string, payload: Buffer): void {
    const parsed = parseDeviceTopic(topic);
    if (parsed?.kind === 'metadata/request') {
      const req = decodeJson(metadataRequestSchema, payload);
      if (req.ok) void this.metadata.serve(parsed.deviceId, req.value);
      return;
    }
    if (!parsed || parsed.kind !== 'artifact/request') return;
    const decoded = decodeJson(chunkRequestSchema, payload);
    if (!decoded.ok) return;
    const req = decoded.value;
    this.requests.push(req);
    const artifact = this.artifacts.get(req.sha256);
    let honest: { header: ChunkHeader; data: Buffer };
    if (!artifact) {
      honest = { header: { requestId: req.requestId, sha256: req.sha256, error: { code: 'not-found', message: `no artifact ${req.sha256}` } }, data: Buffer.alloc(0) };
    } else {
      const data = artifact.subarray(req.offset, Math.min(artifact.length, req.offset + req.length));
      honest = {
        header: { requestId: req.requestId, sha256: req.sha256, offset: req.offset, length: data.length, total: artifact.length, chunkSha256: sha256(data) },
        data: Buffer.from(data),
      };
    }
    const answer = this.tamper ? this.tamper(req, honest) : honest;
    if (!answer) return;
    void this.mqtt().publishAsync(deviceTopic(parsed.deviceId, 'artifact/chunk'), encodeChunkFrame(answer.header, answer.data), { qos: 1 });
  }
}

export function connectAsync(url: string, clientId: string, credentials?: { username: string; password: string }): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = connect(url, { clientId, reconnectPeriod: 0, ...credentials });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}
