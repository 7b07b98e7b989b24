import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJson, encodeJson, metadataFileNameSchema, metadataRequestSchema, metadataResponseSchema, type MetadataResponse } from '@perch/shared';
import type { Fetcher } from 'tuf-js';
// tuf-js's error classes are not re-exported from its index; the Updater tests with instanceof against these.
import { DownloadError, DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import type { Logger } from '../log/logger.js';
import type { MessageHandler } from '../mqtt/dispatcher.js';

/** The Updater builds `<base><file name>`; the file name is all that goes over MQTT. */
export const METADATA_BASE_URL = 'perch-mqtt://metadata/';

/** What the fetcher needs of the device's MQTT link; MqttConnection is one. */
export interface MetadataLink {
  readonly connected: boolean;
  publish(kind: 'metadata/request', payload: Buffer, opts: { qos: 1 }): Promise<void>;
}

export interface MqttMetadataFetcherOptions {
  /** how long one file may take to arrive */
  timeoutMs: number;
}

interface Pending {
  name: string;
  maxLength: number;
  timer: NodeJS.Timeout;
  resolve(bytes: Buffer): void;
  reject(err: Error): void;
}

/**
 * tuf-js's Fetcher over the device's MQTT connection: one `metadata/request`
 * per file, answered on `metadata/response` and matched by requestId. A 404
 * is tuf-js's DownloadHTTPError with status 404, which ends the Updater's
 * root walk; more bytes than the Updater allows for the file (its fixed limit,
 * or the length the parent metadata signed) is a DownloadLengthMismatchError
 * and nothing of it is handed on.
 */
export class MqttMetadataFetcher implements Fetcher {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly link: MetadataLink,
    private readonly opts: MqttMetadataFetcherOptions,
    private readonly log: Logger,
  ) {}

  /** The dispatcher's handler for `metadata/response`. */
  handler(): MessageHandler<MetadataResponse> {
    return {
      kind: 'metadata/response',
      decode: (payload) => decodeJson(metadataResponseSchema, payload),
      handle: (response) => this.onResponse(response),
    };
  }

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    return this.fetchFile(fileNameOf(url), maxLength);
  }

  /** The Updater uses this only for target files; Perch moves those as artifact chunks, but it works. */
  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const bytes = await this.downloadBytes(url, maxLength);
    const dir = await mkdtemp(join(tmpdir(), 'perch-tuf-'));
    try {
      const file = join(dir, 'download');
      await writeFile(file, bytes);
      return await handler(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** One metadata file by its repository name, at most `maxLength` bytes. */
  fetchFile(name: string, maxLength: number): Promise<Buffer> {
    if (!metadataFileNameSchema.safeParse(name).success) return Promise.reject(new DownloadError(`${name} is not a metadata file name`));
    if (!this.link.connected) return Promise.reject(new DownloadError(`cannot fetch ${name}: not connected to the control plane`));
    const requestId = randomUUID();
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new DownloadError(`no answer for ${name} within ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      this.pending.set(requestId, { name, maxLength, timer, resolve, reject });
      this.link.publish('metadata/request', encodeJson(metadataRequestSchema.parse({ requestId, name })), { qos: 1 }).catch((err: Error) => {
        this.settle(requestId)?.reject(new DownloadError(`sending the request for ${name} failed: ${err.message}`));
      });
    });
  }

  /** Fails every request still waiting, e.g. at shutdown. */
  close(): void {
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(new DownloadError('metadata fetcher closed'));
  }

  private settle(requestId: string): Pending | undefined {
    const p = this.pending.get(requestId);
    if (!p) return undefined;
    clearTimeout(p.timer);
    this.pending.delete(requestId);
    return p;
  }

  private onResponse(res: MetadataResponse): void {
    const p = this.pending.get(res.requestId);
    if (!p) {
      // Late answers to requests that already timed out.
      this.log.debug({ requestId: res.requestId, name: res.name }, 'metadata response for no pending request; ignored');
      return;
    }
    if (res.name !== p.name) {
      this.log.warn({ requestId: res.requestId, asked: p.name, got: res.name }, 'metadata response names another file; ignored');
      return;
    }
    this.settle(res.requestId);
    if (res.status !== 200) {
      p.reject(new DownloadHTTPError(res.status === 404 ? `${res.name} not found on the control plane` : `control plane error for ${res.name}: ${res.error}`, res.status));
      return;
    }
    const bytes = Buffer.from(res.body, 'utf8');
    if (bytes.length > p.maxLength) {
      p.reject(new DownloadLengthMismatchError(`${res.name} is ${bytes.length} bytes, more than the ${p.maxLength} allowed`));
      return;
    }
    p.resolve(bytes);
  }
}

function fileNameOf(url: string): string {
  if (!url.startsWith(METADATA_BASE_URL)) throw new DownloadError(`${url} is not under ${METADATA_BASE_URL}`);
  return decodeURIComponent(url.slice(METADATA_BASE_URL.length));
}
