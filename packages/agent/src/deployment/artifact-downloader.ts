import { createHash, randomUUID } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { chunkRequestSchema, decodeChunkFrame, encodeJson, type ChunkHeader, type ChunkRequest } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import { DownloadJournal } from './download-journal.js';
import type { MqttConnection } from '../mqtt/connection.js';
import type { MessageHandler } from '../mqtt/dispatcher.js';

export interface DownloadOptions {
  chunkBytes: number;
  /** requests in flight at once */
  window: number;
  requestTimeoutMs: number;
  /** re-requests of one chunk (timeout, bad chunk) before the download fails */
  maxRetries: number;
}

export interface DownloadRequest {
  sha256: string;
  /** the signed length: never more is asked for or accepted (endless data) */
  length: number;
  partPath: string;
  signal: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
}

/**
 * `rejected`: the control plane's answer contradicts the signed target, so
 * retrying cannot help. `failed`: the transfer did not complete (not found,
 * timeouts, too many bad chunks) and may succeed later.
 */
export class DownloadError extends Error {
  override readonly name = 'DownloadError';
  constructor(
    message: string,
    readonly outcome: 'rejected' | 'failed',
  ) {
    super(message);
  }
}

export interface ChunkFrame {
  header: ChunkHeader;
  data: Buffer;
}

interface Slice {
  offset: number;
  length: number;
  attempts: number;
}

interface InFlight {
  slice: Slice;
  timer: NodeJS.Timeout;
  job: DownloadJob;
}

/**
 * Fetches an artifact over MQTT: chunk requests on `artifact/request`, a
 * window of them in flight, answers matched by requestId on `artifact/chunk`,
 * each chunk checked against its own sha256 and written at its offset.
 */
export class ArtifactDownloader {
  private readonly inFlight = new Map<string, InFlight>();

  constructor(
    private readonly connection: MqttConnection,
    private readonly opts: DownloadOptions,
    private readonly log: Logger,
  ) {}

  /** The dispatcher's handler for `artifact/chunk`. */
  handler(): MessageHandler<ChunkFrame> {
    return {
      kind: 'artifact/chunk',
      decode: (payload) => decodeChunkFrame(payload),
      handle: (frame) => this.onChunk(frame),
    };
  }

  /**
   * Downloads into `partPath`, resuming from the chunks a journal beside it
   * says (and the part file proves) are already there.
   */
  async download(req: DownloadRequest): Promise<void> {
    // r+ keeps what an earlier attempt wrote; w+ creates the file the first time.
    const fh = await open(req.partPath, 'r+').catch(() => open(req.partPath, 'w+'));
    let job: DownloadJob;
    try {
      const { journal, done } = await DownloadJournal.open(req.partPath, fh, { sha256: req.sha256, length: req.length, chunkBytes: this.opts.chunkBytes });
      job = new DownloadJob(this, req, fh, this.opts, journal, done);
      if (done.size > 0) this.log.info({ sha256: req.sha256, chunks: done.size, bytes: job.bytesDone }, 'download resumes from the part file');
    } catch (err) {
      await fh.close();
      throw new DownloadError(`opening ${req.partPath}: ${(err as Error).message}`, 'failed');
    }
    try {
      await job.run();
    } finally {
      job.cancelAll();
      await fh.close();
    }
  }

  /** Publishes one request and tracks it; used by jobs. */
  send(job: DownloadJob, slice: Slice): void {
    const request: ChunkRequest = chunkRequestSchema.parse({ requestId: randomUUID(), sha256: job.sha256, offset: slice.offset, length: slice.length });
    const timer = setTimeout(() => this.onTimeout(request.requestId), this.opts.requestTimeoutMs);
    this.inFlight.set(request.requestId, { slice, timer, job });
    this.connection
      .publish('artifact/request', encodeJson(request), { qos: 1 })
      .catch((err: Error) => this.log.warn({ err: err.message, offset: slice.offset }, 'chunk request not sent; its timeout will retry'));
  }

  forget(requestId: string): void {
    const f = this.inFlight.get(requestId);
    if (f) clearTimeout(f.timer);
    this.inFlight.delete(requestId);
  }

  inFlightCount(job: DownloadJob): number {
    let n = 0;
    for (const f of this.inFlight.values()) if (f.job === job) n++;
    return n;
  }

  forgetJob(job: DownloadJob): void {
    for (const [id, f] of this.inFlight) if (f.job === job) this.forget(id);
  }

  private onTimeout(requestId: string): void {
    const f = this.inFlight.get(requestId);
    if (!f) return;
    this.forget(requestId);
    if (!this.connection.connected) {
      // A link that is down is not the chunk's fault: wait for it without spending a retry.
      f.job.requeue(f.slice, null);
      return;
    }
    f.job.requeue(f.slice, `no answer within ${this.opts.requestTimeoutMs} ms`);
  }

  private onChunk(frame: ChunkFrame): void {
    const f = this.inFlight.get(frame.header.requestId);
    if (!f) {
      // Late answers to requests that timed out and were asked again.
      this.log.debug({ requestId: frame.header.requestId }, 'chunk for no pending request; ignored');
      return;
    }
    this.forget(frame.header.requestId);
    f.job.accept(f.slice, frame);
  }
}

class DownloadJob {
  private readonly todo: Slice[] = [];
  /** bytes in the part file so far, resumed ones included */
  bytesDone: number;
  private pendingWrites = 0;
  private settled = false;
  private resolve!: () => void;
  private reject!: (err: Error) => void;

  constructor(
    private readonly downloader: ArtifactDownloader,
    private readonly req: DownloadRequest,
    private readonly fh: FileHandle,
    private readonly opts: DownloadOptions,
    private readonly journal: DownloadJournal,
    /** chunks already in the part file (offset -> length) */
    done: ReadonlyMap<number, number>,
  ) {
    for (let offset = 0; offset < req.length; offset += opts.chunkBytes) {
      if (!done.has(offset)) this.todo.push({ offset, length: Math.min(opts.chunkBytes, req.length - offset), attempts: 0 });
    }
    this.bytesDone = [...done.values()].reduce((a, b) => a + b, 0);
  }

  get sha256(): string {
    return this.req.sha256;
  }

  run(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      if (this.req.signal.aborted) return this.fail(abortError(this.req.signal));
      this.req.signal.addEventListener('abort', () => this.fail(abortError(this.req.signal)), { once: true });
      this.req.onProgress?.(this.bytesDone, this.req.length);
      if (this.bytesDone === this.req.length) return this.succeed();
      this.pump();
    });
  }

  cancelAll(): void {
    this.downloader.forgetJob(this);
  }

  /** Back in the queue, at the front; `reason` null means the retry is free (link down). */
  requeue(slice: Slice, reason: string | null): void {
    if (this.settled) return;
    if (reason !== null) {
      slice.attempts++;
      if (slice.attempts > this.opts.maxRetries) {
        return this.fail(new DownloadError(`chunk at offset ${slice.offset}: ${reason} (gave up after ${slice.attempts} attempts)`, 'failed'));
      }
    }
    this.todo.unshift(slice);
    this.pump();
  }

  accept(slice: Slice, frame: ChunkFrame): void {
    if (this.settled) return;
    const h = frame.header;
    if ('error' in h) {
      return this.fail(new DownloadError(`control plane refused chunk at offset ${slice.offset}: ${h.error.code}: ${h.error.message}`, 'failed'));
    }
    if (h.total !== this.req.length) {
      const why = h.total > this.req.length ? 'more than signed (endless data)' : 'less than signed';
      return this.fail(new DownloadError(`control plane says the artifact is ${h.total} bytes, the signed length is ${this.req.length}: ${why}`, 'rejected'));
    }
    if (h.sha256 !== this.req.sha256 || h.offset !== slice.offset || h.length !== slice.length) {
      return this.requeue(slice, `answer for ${h.sha256.slice(0, 12)} @${h.offset}+${h.length} does not match the request @${slice.offset}+${slice.length}`);
    }
    const actual = createHash('sha256').update(frame.data).digest('hex');
    if (actual !== h.chunkSha256) return this.requeue(slice, `chunk data failed its chunkSha256 (got ${actual.slice(0, 12)}…)`);
    this.pendingWrites++;
    this.fh
      .write(frame.data, 0, frame.data.length, slice.offset)
      .then(() => this.journal.record(slice.offset, h.chunkSha256))
      .then(() => {
        this.pendingWrites--;
        if (this.settled) return;
        this.bytesDone += slice.length;
        this.req.onProgress?.(this.bytesDone, this.req.length);
        if (this.bytesDone === this.req.length && this.pendingWrites === 0) this.succeed();
        else this.pump();
      })
      .catch((err: Error) => this.fail(new DownloadError(`writing ${this.req.partPath}: ${err.message}`, 'failed')));
  }

  private pump(): void {
    if (this.settled) return;
    let inFlight = this.countInFlight();
    while (inFlight < this.opts.window) {
      const slice = this.todo.shift();
      if (!slice) break;
      this.downloader.send(this, slice);
      inFlight++;
    }
  }

  private countInFlight(): number {
    return this.downloader.inFlightCount(this);
  }

  private succeed(): void {
    if (this.settled) return;
    this.settled = true;
    this.cancelAll();
    this.resolve();
  }

  private fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.cancelAll();
    this.reject(err);
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('download aborted', 'AbortError');
}
