import { createHash, randomUUID } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import {
  chunkRequestSchema,
  decodeChunkFrame,
  decodeChunkManifest,
  encodeJson,
  MAX_CHUNK_MANIFEST_BYTES,
  type ChunkHeader,
  type ChunkManifest,
  type ChunkManifestRef,
  type ChunkRequest,
} from '@perch/shared';
import type { Logger } from '../log/logger.js';
import { DownloadJournal, type PlannedChunk } from './download-journal.js';
import { LocalChunks, type LocalChunkSource } from './local-chunks.js';
import type { MqttConnection } from '../mqtt/connection.js';
import type { MessageHandler } from '../mqtt/dispatcher.js';

/**
 * Chunk requests in flight: each is a round trip through the broker and
 * the control plane, so the window must cover the link's bandwidth x round
 * trip. On loopback (bench/delivery.ts, 256 KiB requests, medians of 3
 * runs) windows of 4, 8, 16 and 32 ran at 238, 241, 230 and 193 MiB/s, all
 * within the noise; 8 average chunks (~2 MiB) cover e.g. 100 Mbit/s at a
 * 160 ms round trip, and keep at most 8 MiB of frames in flight.
 */
export const DEFAULT_DOWNLOAD_WINDOW = 8;

export interface DownloadOptions {
  /** the most one request asks for: the chunk size without a manifest (older targets, the manifest itself); larger manifest chunks come in pieces */
  chunkBytes: number;
  /** requests in flight at once */
  window: number;
  /** a request is asked again when neither it nor any other chunk of its download arrived for this long */
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
  /**
   * The signed target's chunk manifest: chunks are then cut and checked
   * along it, and copied from `localSources` where they match. Without one,
   * fixed-size chunks checked against the control plane's own hashes.
   */
  chunkManifest?: ChunkManifestRef | null;
  /** files on this device (installed models) with the manifests of their bytes */
  localSources?: readonly LocalChunkSource[];
}

/** Where the artifact's bytes came from: these add up to its length. */
export interface DownloadResult {
  /** the verified manifest and its bytes as signed, to keep beside the installed model; null without one */
  manifest: ChunkManifest | null;
  manifestBytes: Buffer | null;
  /** received over MQTT */
  bytesFetched: number;
  /** copied from models already on the device */
  bytesReused: number;
  /** copied from an identical chunk elsewhere in this artifact */
  bytesDuplicated: number;
  /** in the part file from an earlier attempt */
  bytesResumed: number;
  /** the manifest's own bytes, received over MQTT */
  manifestBytesFetched: number;
  /** chunks that failed their hash and were asked for again */
  badChunks: number;
  ms: number;
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

/** One request: a whole chunk, or a piece of a manifest chunk larger than `chunkBytes`. */
interface Slice {
  offset: number;
  length: number;
  /** the signed sha256 from the manifest; null: checked against the answer's own chunkSha256 */
  sha256: string | null;
  /** further offsets that hold the same bytes (a chunk repeated within the artifact) */
  copies: number[];
  attempts: number;
  /** attempts whose bytes failed their signed hash */
  tampered: number;
  /** the chunk this is a piece of: checked once all its pieces are in */
  of?: Assembly;
}

/** A manifest chunk fetched in pieces, gathered in memory until it can be checked whole. */
interface Assembly {
  offset: number;
  length: number;
  sha256: string;
  copies: number[];
  attempts: number;
  pieces: Slice[];
  buf: Buffer | null;
  /** offsets of the pieces in buf */
  received: Set<number>;
}

/** Where a job's verified chunks go. */
interface Sink {
  write(data: Buffer, offset: number): Promise<void>;
  record(offset: number, sha256: string): Promise<void>;
}

interface JobSpec {
  /** the artifact asked for */
  sha256: string;
  /** its signed length: the `total` every answer must carry */
  length: number;
  /** for messages: 'artifact' or 'chunk manifest' */
  what: string;
  /** bytes already in place */
  done: number;
  signal: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
}

interface InFlight {
  slice: Slice;
  timer: NodeJS.Timeout;
  job: DownloadJob;
}

/**
 * Fetches an artifact over MQTT: chunk requests on `artifact/request`, a
 * window of them in flight, answers matched by requestId on `artifact/chunk`,
 * each chunk checked and written at its offset. With a signed chunk
 * manifest the manifest comes first (itself an artifact, checked against
 * its signed sha256); then every chunk found on the device is copied, and
 * only the rest is asked for, along the manifest's boundaries, each checked
 * against the manifest's hash rather than the hash the answer carries.
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
  async download(req: DownloadRequest): Promise<DownloadResult> {
    const started = performance.now();
    const manifest = req.chunkManifest ? await this.fetchManifest(req, req.chunkManifest) : null;
    // r+ keeps what an earlier attempt wrote; w+ creates the file the first time.
    const fh = await open(req.partPath, 'r+').catch(() => open(req.partPath, 'w+'));
    let journal: DownloadJournal | null = null;
    try {
      const plan = manifest ? manifestPlan(manifest.manifest) : fixedPlan(req.length, this.opts.chunkBytes);
      let done: Map<number, number>;
      try {
        if ((await fh.stat()).size > req.length) await fh.truncate(req.length);
        const key = manifest ? { sha256: req.sha256, length: req.length, manifest: manifest.sha256 } : { sha256: req.sha256, length: req.length, chunkBytes: this.opts.chunkBytes };
        const opened = await DownloadJournal.open(req.partPath, fh, key, plan);
        journal = opened.journal;
        done = opened.done;
      } catch (err) {
        throw new DownloadError(`opening ${req.partPath}: ${(err as Error).message}`, 'failed');
      }
      const result: DownloadResult = {
        manifest: manifest?.manifest ?? null,
        manifestBytes: manifest?.bytes ?? null,
        bytesFetched: 0,
        bytesReused: 0,
        bytesDuplicated: 0,
        bytesResumed: [...done.values()].reduce((a, b) => a + b, 0),
        manifestBytesFetched: manifest?.bytes.length ?? 0,
        badChunks: manifest?.badChunks ?? 0,
        ms: 0,
      };
      if (done.size > 0) this.log.info({ sha256: req.sha256, chunks: done.size, bytes: result.bytesResumed }, 'download resumes from the part file');
      const j = journal;
      const sink: Sink = {
        write: async (data, offset) => void (await fh.write(data, 0, data.length, offset)),
        record: (offset, sha256) => j.record(offset, sha256),
      };
      const slices = await this.slicesToFetch(req, plan, done, sink, result);
      const job = new DownloadJob(this, { sha256: req.sha256, length: req.length, what: 'artifact', done: req.length - pendingBytes(slices), signal: req.signal, onProgress: req.onProgress }, sink, this.opts, slices);
      try {
        await job.run();
      } finally {
        job.cancelAll();
        // Writes still under way (the job failed or was aborted meanwhile) end before the files close.
        await job.settledWrites();
      }
      result.bytesFetched = job.bytesFetched;
      result.bytesDuplicated += job.bytesDuplicated;
      result.badChunks += job.badChunks;
      result.ms = Math.round(performance.now() - started);
      this.log.info(
        {
          sha256: req.sha256,
          length: req.length,
          fetched: result.bytesFetched,
          reused: result.bytesReused,
          duplicated: result.bytesDuplicated,
          resumed: result.bytesResumed,
          manifest: result.manifestBytesFetched,
          badChunks: result.badChunks,
          ms: result.ms,
        },
        'download complete',
      );
      return result;
    } finally {
      await journal?.close().catch(() => undefined);
      await fh.close();
    }
  }

  /**
   * With a manifest: copies every missing chunk the device already has
   * (in other models, or elsewhere in this part file) and returns one slice
   * per distinct chunk still to fetch, carrying the other offsets with the
   * same bytes. Without one: the fixed-size chunks not yet done.
   */
  private async slicesToFetch(req: DownloadRequest, plan: ReadonlyMap<number, PlannedChunk>, done: ReadonlyMap<number, number>, sink: Sink, result: DownloadResult): Promise<Slice[]> {
    const bySha = new Map<string, Slice>();
    const slices: Slice[] = [];
    const local = new LocalChunks((req.localSources ?? []).filter((s) => s.path !== req.partPath));
    const inPart = new LocalChunks([]);
    try {
      for (const [offset, chunk] of plan) {
        if (chunk.sha256 === null) {
          if (!done.has(offset)) slices.push({ offset, length: chunk.length, sha256: null, copies: [], attempts: 0, tampered: 0 });
          continue;
        }
        if (done.has(offset)) {
          inPart.add(chunk.sha256, req.partPath, offset);
          continue;
        }
        const same = bySha.get(chunk.sha256);
        if (same) same.copies.push(offset);
        else bySha.set(chunk.sha256, { offset, length: chunk.length, sha256: chunk.sha256, copies: [], attempts: 0, tampered: 0 });
      }
      if (bySha.size === 0) return slices;
      for (const slice of bySha.values()) {
        const sha = slice.sha256 as string;
        // The part file is a source too: one copy of a repeated chunk may be in it from an earlier attempt.
        const fromPart = inPart.has(sha) ? await inPart.read(sha, slice.length) : null;
        const data = fromPart ?? (local.has(sha) ? await local.read(sha, slice.length) : null);
        if (req.signal.aborted) throw abortError(req.signal);
        if (!data) {
          slices.push(slice);
          continue;
        }
        for (const offset of [slice.offset, ...slice.copies]) {
          await sink.write(data, offset);
          await sink.record(offset, sha);
        }
        const bytes = slice.length * (1 + slice.copies.length);
        if (fromPart) result.bytesDuplicated += bytes;
        else result.bytesReused += bytes;
      }
    } catch (err) {
      if (err instanceof DownloadError || req.signal.aborted) throw err;
      throw new DownloadError(`copying local chunks into ${req.partPath}: ${(err as Error).message}`, 'failed');
    } finally {
      await local.close();
      await inPart.close();
    }
    return slices.sort((a, b) => a.offset - b.offset);
  }

  /** The signed chunk manifest, fetched into memory and checked against its signed sha256 and the target it describes. */
  private async fetchManifest(req: DownloadRequest, ref: ChunkManifestRef): Promise<{ sha256: string; manifest: ChunkManifest; bytes: Buffer; badChunks: number }> {
    if (ref.length > MAX_CHUNK_MANIFEST_BYTES) {
      throw new DownloadError(`the signed chunk manifest is ${ref.length} bytes, over the ${MAX_CHUNK_MANIFEST_BYTES} a device holds`, 'rejected');
    }
    const bytes = Buffer.alloc(ref.length);
    const sink: Sink = {
      write: async (data, offset) => void data.copy(bytes, offset),
      record: async () => undefined,
    };
    const slices = [...fixedPlan(ref.length, this.opts.chunkBytes)].map(([offset, c]) => ({ offset, length: c.length, sha256: null, copies: [], attempts: 0, tampered: 0 }));
    const job = new DownloadJob(this, { sha256: ref.sha256, length: ref.length, what: 'chunk manifest', done: 0, signal: req.signal }, sink, this.opts, slices);
    try {
      await job.run();
    } finally {
      job.cancelAll();
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== ref.sha256) throw new DownloadError(`chunk manifest sha256 ${actual} does not match the signed ${ref.sha256}`, 'rejected');
    const decoded = decodeChunkManifest(bytes);
    if (!decoded.ok) throw new DownloadError(`chunk manifest invalid: ${decoded.error}`, 'rejected');
    const m = decoded.value;
    if (m.sha256 !== req.sha256 || m.length !== req.length) {
      throw new DownloadError(`chunk manifest describes ${m.sha256} (${m.length} bytes), not the signed ${req.sha256} (${req.length} bytes)`, 'rejected');
    }
    return { sha256: ref.sha256, manifest: m, bytes, badChunks: job.badChunks };
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
    const quiet = performance.now() - f.job.lastAnswerAt;
    if (this.connection.connected && quiet < this.opts.requestTimeoutMs) {
      // Other chunks of this download are arriving: the control plane is busy or pacing
      // (bandwidth limits), not ignoring us. Wait on rather than ask again.
      f.timer = setTimeout(() => this.onTimeout(requestId), this.opts.requestTimeoutMs - quiet);
      return;
    }
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
  private readonly todo: Slice[];
  /** bytes in place so far, resumed and copied ones included */
  private bytesDone: number;
  bytesFetched = 0;
  bytesDuplicated = 0;
  badChunks = 0;
  /** when this job last heard an answer (or started): request timeouts count from here */
  lastAnswerAt = performance.now();
  private pendingWrites = 0;
  private readonly writes = new Set<Promise<void>>();
  private settled = false;
  private resolve!: () => void;
  private reject!: (err: Error) => void;

  constructor(
    private readonly downloader: ArtifactDownloader,
    private readonly spec: JobSpec,
    private readonly sink: Sink,
    private readonly opts: DownloadOptions,
    slices: Slice[],
  ) {
    // No request asks for more than chunkBytes: a larger manifest chunk is asked for in pieces.
    this.todo = slices.flatMap((s) => (s.sha256 !== null && s.length > opts.chunkBytes ? split(s, opts.chunkBytes) : [s]));
    this.bytesDone = spec.done;
  }

  get sha256(): string {
    return this.spec.sha256;
  }

  run(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      const { signal } = this.spec;
      if (signal.aborted) return this.fail(abortError(signal));
      signal.addEventListener('abort', () => this.fail(abortError(signal)), { once: true });
      this.spec.onProgress?.(this.bytesDone, this.spec.length);
      if (this.bytesDone === this.spec.length) return this.succeed();
      this.lastAnswerAt = performance.now();
      this.pump();
    });
  }

  cancelAll(): void {
    this.downloader.forgetJob(this);
  }

  /** Resolves once no write of this job is under way, whether they succeeded or not. */
  async settledWrites(): Promise<void> {
    await Promise.allSettled([...this.writes]);
  }

  /**
   * Back in the queue, at the front; `reason` null means the retry is free
   * (link down). `tampered`: the bytes came but failed their signed hash; a
   * chunk that fails it on every attempt is what the control plane serves,
   * not a blip, and the artifact is refused rather than tried again later.
   */
  requeue(slice: Slice, reason: string | null, tampered = false): void {
    if (this.settled) return;
    if (reason !== null) {
      slice.attempts++;
      if (tampered) slice.tampered++;
      if (slice.attempts > this.opts.maxRetries) {
        const refused = slice.tampered === slice.attempts;
        return this.fail(new DownloadError(`${refused ? 'tampered: ' : ''}chunk at offset ${slice.offset}: ${reason} (gave up after ${slice.attempts} attempts)`, refused ? 'rejected' : 'failed'));
      }
    }
    this.todo.unshift(slice);
    this.pump();
  }

  accept(slice: Slice, frame: ChunkFrame): void {
    if (this.settled) return;
    this.lastAnswerAt = performance.now();
    const h = frame.header;
    const { what, length } = this.spec;
    if ('error' in h) {
      return this.fail(new DownloadError(`control plane refused ${what} chunk at offset ${slice.offset}: ${h.error.code}: ${h.error.message}`, 'failed'));
    }
    if (h.total !== length) {
      const why = h.total > length ? 'more than signed (endless data)' : 'less than signed';
      return this.fail(new DownloadError(`control plane says the ${what} is ${h.total} bytes, the signed length is ${length}: ${why}`, 'rejected'));
    }
    if (h.sha256 !== this.spec.sha256 || h.offset !== slice.offset) {
      return this.requeue(slice, `answer for ${h.sha256.slice(0, 12)} @${h.offset}+${h.length} does not match the request @${slice.offset}+${slice.length}`);
    }
    if (h.length > slice.length) {
      const signed = slice.sha256 !== null ? 'the signed chunk manifest says' : slice.of ? 'its piece of a signed chunk is' : 'asked for';
      return this.fail(new DownloadError(`${what} chunk at offset ${slice.offset} is ${h.length} bytes, ${signed} ${slice.length}: more than signed`, 'rejected'));
    }
    if (h.length < slice.length) return this.requeue(slice, `answer @${h.offset} carries ${h.length} bytes, ${slice.length} asked for`);
    if (slice.of) return this.gather(slice, slice.of, frame.data);
    const actual = createHash('sha256').update(frame.data).digest('hex');
    if (slice.sha256 !== null && actual !== slice.sha256) {
      this.badChunks++;
      return this.requeue(slice, `chunk data sha256 ${actual.slice(0, 12)}… does not match the signed chunk manifest`, true);
    }
    if (slice.sha256 === null && actual !== h.chunkSha256) {
      this.badChunks++;
      return this.requeue(slice, `chunk data failed its chunkSha256 (got ${actual.slice(0, 12)}…)`);
    }
    this.commit(frame.data, slice.offset, slice.copies, actual);
  }

  /** A piece of a larger chunk: kept until the chunk is whole, which is then checked against the manifest. */
  private gather(piece: Slice, whole: Assembly, data: Buffer): void {
    if (whole.received.has(piece.offset)) return this.pump();
    whole.buf ??= Buffer.allocUnsafe(whole.length);
    data.copy(whole.buf, piece.offset - whole.offset);
    whole.received.add(piece.offset);
    if (whole.received.size < whole.pieces.length) return this.pump();
    const buf = whole.buf;
    whole.buf = null;
    whole.received.clear();
    const actual = createHash('sha256').update(buf).digest('hex');
    if (actual === whole.sha256) return this.commit(buf, whole.offset, whole.copies, actual);
    // Which piece was bad cannot be told: the chunk is asked for again, all of it and nothing else.
    this.badChunks++;
    whole.attempts++;
    if (whole.attempts > this.opts.maxRetries) {
      return this.fail(new DownloadError(`tampered: chunk at offset ${whole.offset}: chunk data sha256 ${actual.slice(0, 12)}… does not match the signed chunk manifest (gave up after ${whole.attempts} attempts)`, 'rejected'));
    }
    this.todo.unshift(...whole.pieces);
    this.pump();
  }

  /** Writes a checked chunk at its offset and at those of its copies, then records it in the journal. */
  private commit(data: Buffer, at: number, copies: readonly number[], sha256: string): void {
    const { what, length } = this.spec;
    this.pendingWrites++;
    const offsets = [at, ...copies];
    const written = (async () => {
      for (const offset of offsets) {
        await this.sink.write(data, offset);
        await this.sink.record(offset, sha256);
      }
    })();
    this.writes.add(written);
    void written.finally(() => this.writes.delete(written)).catch(() => undefined);
    written
      .then(() => {
        this.pendingWrites--;
        if (this.settled) return;
        this.bytesFetched += data.length;
        this.bytesDuplicated += data.length * copies.length;
        this.bytesDone += data.length * offsets.length;
        this.spec.onProgress?.(this.bytesDone, length);
        if (this.bytesDone === length && this.pendingWrites === 0) this.succeed();
        else this.pump();
      })
      .catch((err: Error) => this.fail(new DownloadError(`writing the ${what}: ${err.message}`, 'failed')));
    // The window is refilled now, not after the write: the disk and the link work at the same time.
    this.pump();
  }

  private pump(): void {
    if (this.settled) return;
    let inFlight = this.downloader.inFlightCount(this);
    while (inFlight < this.opts.window) {
      const slice = this.todo.shift();
      if (!slice) break;
      this.downloader.send(this, slice);
      inFlight++;
    }
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

/** Fixed-size chunks with no hash of their own: checked against each answer's chunkSha256. */
function fixedPlan(length: number, chunkBytes: number): Map<number, PlannedChunk> {
  const plan = new Map<number, PlannedChunk>();
  for (let offset = 0; offset < length; offset += chunkBytes) plan.set(offset, { length: Math.min(chunkBytes, length - offset), sha256: null });
  return plan;
}

/** A manifest chunk as requests of at most `max` bytes, gathered by an Assembly. */
function split(s: Slice, max: number): Slice[] {
  const whole: Assembly = { offset: s.offset, length: s.length, sha256: s.sha256 as string, copies: s.copies, attempts: 0, pieces: [], buf: null, received: new Set() };
  for (let o = 0; o < s.length; o += max) whole.pieces.push({ offset: s.offset + o, length: Math.min(max, s.length - o), sha256: null, copies: [], attempts: 0, tampered: 0, of: whole });
  return whole.pieces;
}

function manifestPlan(m: ChunkManifest): Map<number, PlannedChunk> {
  return new Map(m.chunks.map((c) => [c.offset, { length: c.length, sha256: c.sha256 }]));
}

function pendingBytes(slices: readonly Slice[]): number {
  return slices.reduce((n, s) => n + s.length * (1 + s.copies.length), 0);
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('download aborted', 'AbortError');
}
