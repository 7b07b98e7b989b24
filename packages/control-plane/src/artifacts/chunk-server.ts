import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { CHUNK_FRAME_HEADROOM, chunkRequestSchema, deviceTopic, encodeChunkFrame, frameAroundChunk, type ChunkHeader, type ChunkRequest } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { ArtifactStore } from '../registry/artifact-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import { BandwidthLimiter, type BandwidthLimits } from './bandwidth-limiter.js';
import { FramePool } from './frame-pool.js';
import { OutputBudget } from './output-budget.js';
import { TurnBudget } from './turn-budget.js';

/**
 * Where chunk frames are published: the embedded broker itself, which hands
 * them to the device's connection with no loopback hop, no second parse and
 * no copy (the control plane's bus would also do, more slowly).
 */
export interface ChunkPublisher {
  /** resolves true when `payload` is no longer referenced and may be reused */
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 }): Promise<boolean | void>;
}

/** Chunk hashes remembered: a fleet fetching one model asks for the same chunks many times, and artifacts never change. */
const HASH_MEMO_ENTRIES = 16_384;
/** Artifact files kept open (with their sizes): a delivery reads one file a few hundred times. */
const OPEN_FILES = 16;
/**
 * Chunk bytes one device may have read and not yet written to its socket:
 * a window of 8 of the largest chunks, so a well-behaved device never waits
 * on it, while one asking for a whole model at once cannot make the
 * control plane read it all into memory. Per device, so a slow link holds
 * back only its own device.
 */
const DEVICE_OUTPUT_BYTES = 8 * 1024 * 1024;
/**
 * Chunk bytes served per event-loop turn (see TurnBudget): one average
 * chunk. With 50 devices downloading at once (bench/delivery.ts) telemetry
 * p99 went from 32-37 ms with no bound to 5-16 ms, at the same throughput.
 */
const BYTES_PER_TURN = 256 * 1024;
/**
 * Frame buffers kept for reuse (see FramePool). With 50 devices at once it
 * took major collections from ~200 to 1-2 per delivery, throughput from
 * ~175 to ~265 MiB/s and telemetry p99 from ~38 ms to 5-15 ms.
 */
const POOLED_FRAME_BYTES = 32 * 1024 * 1024;

/**
 * Answers a device's chunk request with one binary frame on that device's
 * own chunk topic. Only artifacts of registered model versions (and their
 * chunk manifests) are served. A chunk waits, in order, for its bytes in
 * the device's and the fleet's token buckets (with bandwidth limits), for
 * room in the device's output budget, and for a turn of the event loop
 * with room for it; then it is read into a pooled buffer and published
 * inside the embedded broker (see ChunkPublisher) at QoS 0: the device's
 * request is the acknowledgement, and it asks again for a frame that does
 * not come. A device that asks again for a chunk still waiting here (its
 * request timed out) gets one answer, to its latest request, not two.
 */
export class ChunkServer {
  readonly stats = { chunks: 0, bytes: 0, errors: 0, throttled: 0 };
  private readonly limiter: BandwidthLimiter;
  private readonly outputs = new Map<string, OutputBudget>();
  private readonly turns = new TurnBudget(BYTES_PER_TURN);
  private readonly frames = new FramePool(POOLED_FRAME_BYTES);
  /** servable artifacts, open, with their sizes; registrations are never undone and files never change */
  private readonly files = new Map<string, { fd: number; size: number }>();
  private readonly hashMemo = new Map<string, string>();
  /** chunks waiting here (for bandwidth or output budget): device + range -> the request id to answer */
  private readonly waiting = new Map<string, { requestId: string }>();
  private closed = false;

  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly versions: ModelVersionStore,
    private readonly out: ChunkPublisher,
    private readonly log: Logger,
    limits: BandwidthLimits = { perDevice: null, total: null },
  ) {
    this.limiter = new BandwidthLimiter(limits);
  }

  handler() {
    return defineHandler({
      kind: 'artifact/request',
      schema: chunkRequestSchema,
      handle: (deviceId, req) => this.serve(deviceId, req),
    });
  }

  async serve(deviceId: string, req: ChunkRequest): Promise<void> {
    if (this.closed) return;
    const topic = deviceTopic(deviceId, 'artifact/chunk');
    const range = this.range(req);
    if ('error' in range) {
      await this.out.publish(topic, encodeChunkFrame(range.error), { qos: 0 });
      return;
    }
    // A device that asks again for a chunk still waiting here (its request timed out) gets one answer, to its latest request.
    const key = `${deviceId}\n${req.sha256}\n${req.offset}\n${range.length}`;
    const already = this.waiting.get(key);
    if (already) {
      already.requestId = req.requestId;
      return;
    }
    const entry = { requestId: req.requestId };
    this.waiting.set(key, entry);
    try {
      if (this.limiter.limited) {
        const started = performance.now();
        await this.limiter.acquire(deviceId, range.length);
        if (performance.now() - started >= 1) this.stats.throttled++;
      }
      await this.output(deviceId).acquire(range.length);
      await this.turns.take(range.length);
    } finally {
      this.waiting.delete(key);
    }
    try {
      if (this.closed) return;
      // Read straight into the frame: one buffer per answer, however many devices ask. The file is
      // looked up again after the wait: an open file may have been closed for others meanwhile.
      const file = this.file(req.sha256);
      if (!file) throw new Error(`artifact ${req.sha256} is no longer servable`);
      const buf = this.frames.take(range.length);
      const n = readSync(file.fd, buf, CHUNK_FRAME_HEADROOM, range.length, req.offset);
      if (n !== range.length) throw new Error(`artifact ${req.sha256}: read ${n} of ${range.length} bytes at ${req.offset}`);
      const data = buf.subarray(CHUNK_FRAME_HEADROOM, CHUNK_FRAME_HEADROOM + n);
      this.stats.chunks++;
      this.stats.bytes += data.length;
      const header: ChunkHeader = { requestId: entry.requestId, sha256: req.sha256, offset: req.offset, length: data.length, total: range.total, chunkSha256: this.chunkSha256(req, data) };
      if ((await this.out.publish(topic, frameAroundChunk(buf, header), { qos: 0 })) === true) this.frames.give(buf);
    } finally {
      const output = this.output(deviceId);
      output.release(range.length);
      if (output.idle) this.outputs.delete(deviceId);
    }
  }

  private output(deviceId: string): OutputBudget {
    let b = this.outputs.get(deviceId);
    if (!b) {
      b = new OutputBudget(DEVICE_OUTPUT_BYTES);
      this.outputs.set(deviceId, b);
    }
    return b;
  }

  /** Closes the artifact files held open. */
  close(): void {
    this.closed = true;
    for (const f of this.files.values()) closeSync(f.fd);
    this.files.clear();
  }

  /** What a request may get: its clipped range, or the error frame that answers it. */
  private range(req: ChunkRequest): { total: number; length: number } | { error: ChunkHeader } {
    const fail = (code: 'not-found' | 'bad-range', message: string) => {
      this.stats.errors++;
      this.log.warn({ sha256: req.sha256, offset: req.offset, code }, message);
      return { error: { requestId: req.requestId, sha256: req.sha256, error: { code, message } } };
    };
    const file = this.file(req.sha256);
    if (!file) return fail('not-found', `no registered artifact with sha256 ${req.sha256}`);
    const total = file.size;
    if (req.offset >= total) return fail('bad-range', `offset ${req.offset} is past the end (${total} bytes)`);
    return { total, length: Math.min(req.length, total - req.offset) };
  }

  /** The artifact's open file, if it is registered and stored. */
  private file(sha256: string): { fd: number; size: number } | null {
    const cached = this.files.get(sha256);
    if (cached) {
      // Most recently used last, so the first is the one to close.
      this.files.delete(sha256);
      this.files.set(sha256, cached);
      return cached;
    }
    if (!this.versions.hasArtifact(sha256) || !this.artifacts.has(sha256)) return null;
    const file = { fd: openSync(this.artifacts.pathOf(sha256), 'r'), size: this.artifacts.size(sha256) };
    if (this.files.size >= OPEN_FILES) {
      const [oldest, f] = this.files.entries().next().value ?? [];
      if (oldest !== undefined && f) {
        this.files.delete(oldest);
        closeSync(f.fd);
      }
    }
    this.files.set(sha256, file);
    return file;
  }

  private chunkSha256(req: ChunkRequest, data: Buffer): string {
    const key = `${req.sha256}:${req.offset}:${data.length}`;
    let hash = this.hashMemo.get(key);
    if (hash === undefined) {
      hash = createHash('sha256').update(data).digest('hex');
      if (this.hashMemo.size >= HASH_MEMO_ENTRIES) {
        const oldest = this.hashMemo.keys().next();
        if (!oldest.done) this.hashMemo.delete(oldest.value);
      }
      this.hashMemo.set(key, hash);
    }
    return hash;
  }
}
