import { createHash } from 'node:crypto';
import { chunkRequestSchema, deviceTopic, encodeChunkFrame, type ChunkHeader, type ChunkRequest } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { ControlPlaneBus } from '../bus/control-plane-bus.js';
import type { ArtifactStore } from '../registry/artifact-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';

/**
 * Answers a device's chunk request with one binary frame on that device's
 * own chunk topic. Only artifacts of registered model versions are served.
 */
export class ChunkServer {
  readonly stats = { chunks: 0, bytes: 0, errors: 0 };

  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly versions: ModelVersionStore,
    private readonly bus: ControlPlaneBus,
    private readonly log: Logger,
  ) {}

  handler() {
    return defineHandler({
      kind: 'artifact/request',
      schema: chunkRequestSchema,
      handle: (deviceId, req) => this.serve(deviceId, req),
    });
  }

  async serve(deviceId: string, req: ChunkRequest): Promise<void> {
    const frame = this.answer(req);
    await this.bus.publish(deviceTopic(deviceId, 'artifact/chunk'), frame, { qos: 1 });
  }

  private answer(req: ChunkRequest): Buffer {
    const fail = (code: 'not-found' | 'bad-range', message: string): Buffer => {
      this.stats.errors++;
      this.log.warn({ sha256: req.sha256, offset: req.offset, code }, message);
      const header: ChunkHeader = { requestId: req.requestId, sha256: req.sha256, error: { code, message } };
      return encodeChunkFrame(header);
    };
    if (!this.versions.hasSha256(req.sha256) || !this.artifacts.has(req.sha256)) {
      return fail('not-found', `no registered artifact with sha256 ${req.sha256}`);
    }
    const total = this.artifacts.size(req.sha256);
    if (req.offset >= total) return fail('bad-range', `offset ${req.offset} is past the end (${total} bytes)`);
    const data = this.artifacts.read(req.sha256, req.offset, Math.min(req.length, total - req.offset));
    this.stats.chunks++;
    this.stats.bytes += data.length;
    return encodeChunkFrame(
      {
        requestId: req.requestId,
        sha256: req.sha256,
        offset: req.offset,
        length: data.length,
        total,
        chunkSha256: createHash('sha256').update(data).digest('hex'),
      },
      data,
    );
  }
}
