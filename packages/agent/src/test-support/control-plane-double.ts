import { createHash } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import {
  allDevicesFilter,
  chunkRequestSchema,
  decodeJson,
  deviceTopic,
  encodeChunkFrame,
  encodeJson,
  modelTargetPath,
  parseDeviceTopic,
  signEnvelope,
  type ChunkHeader,
  type ChunkRequest,
  type DesiredState,
  type ModelMetadata,
  type ModelTarget,
  type SignedDesiredState,
  type SignedModelTarget,
  type SigningKey,
} from '@perch/shared';

/** What the double answers to one request; by default the honest chunk. */
export type ChunkAnswer = { header: ChunkHeader; data: Buffer } | null;
export type Tamper = (req: ChunkRequest, honest: { header: ChunkHeader; data: Buffer }) => ChunkAnswer;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function inOneYear(): string {
  return new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString();
}

/**
 * Plays the control plane's part over a real broker: signs model targets
 * and desired states, and answers chunk requests the way the real one does
 * (one frame per request on the device's `artifact/chunk` topic, QoS 1).
 * `tamper` lets a test corrupt or withhold answers.
 */
export class ControlPlaneDouble {
  private client: MqttClient | null = null;
  readonly artifacts = new Map<string, Buffer>();
  readonly requests: ChunkRequest[] = [];
  tamper: Tamper | null = null;

  constructor(
    private readonly url: string,
    readonly key: SigningKey,
    private readonly credentials?: { username: string; password: string },
  ) {}

  async start(): Promise<void> {
    const client = await connectAsync(this.url, 'control-plane-double', this.credentials);
    this.client = client;
    client.on('message', (topic, payload) => this.onRequest(topic, payload));
    await client.subscribeAsync(allDevicesFilter('artifact/request'), { qos: 1 });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
    this.client = null;
  }

  addArtifact(bytes: Buffer): string {
    const hash = sha256(bytes);
    this.artifacts.set(hash, bytes);
    return hash;
  }

  signTarget(bytes: Buffer, metadata: ModelMetadata, opts: { name?: string; version?: string; key?: SigningKey; length?: number; sha256?: string } = {}): SignedModelTarget {
    const name = opts.name ?? 'tiny';
    const version = opts.version ?? '1';
    const target: ModelTarget = {
      _type: 'model-target',
      spec_version: '1.0',
      version: 1,
      expires: inOneYear(),
      path: modelTargetPath(name, version),
      length: opts.length ?? bytes.length,
      hashes: { sha256: opts.sha256 ?? sha256(bytes) },
      custom: { name, version, format: 'onnx', metadata, createdAt: new Date().toISOString() },
    };
    return signEnvelope(target, [opts.key ?? this.key]);
  }

  desiredState(
    deviceId: string,
    generation: number,
    active: SignedModelTarget | null,
    opts: { key?: SigningKey; expires?: string } = {},
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
    };
    return signEnvelope(desired, [opts.key ?? this.key]);
  }

  async publishDesired(deviceId: string, payload: SignedDesiredState | Buffer | string): Promise<void> {
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
