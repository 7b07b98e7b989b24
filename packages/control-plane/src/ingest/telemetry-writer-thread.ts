import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '@perch/shared';
import type { Logger } from 'pino';
import type { DeferredStateOptions } from './deferred-telemetry-state.js';
import { packWindows, type PackedWindows } from './packed-windows.js';
import type { ReceivedWindow } from './received-telemetry.js';
import type { BatchResult } from './telemetry-batch-writer.js';
import type { BatchSink } from './telemetry-ingest.js';

export interface WriterInit {
  databaseFile: string;
  /** the gap detector's grace period (ms) */
  gapGraceMs: number;
  /** when rollups, sequences and last seen are written */
  state: DeferredStateOptions;
}

export type ToWriter = { type: 'write'; id: number; windows: PackedWindows } | { type: 'flush-state'; id: number } | { type: 'close' };

export type FromWriter =
  | { type: 'log'; level: 'error' | 'info'; msg: string; fields: Record<string, unknown> }
  | { type: 'written'; id: number; result: BatchResult }
  | { type: 'flushed'; id: number }
  | { type: 'failed'; id: number; message: string; code?: string };

interface Waiting {
  resolve: (result: BatchResult | null) => void;
  reject: (err: Error) => void;
}

/**
 * The telemetry batch writer on a thread of its own, with its own SQLite
 * connection. Writing is most of a window's CPU on the control plane
 * (windows, gaps, commit, and the rollups, sequences and last seen behind
 * them); on the main thread it held MQTT (reading,
 * authorising, acknowledging) off one core while the other idled. The main
 * thread hands it the windows as received; it decodes and checks them
 * (ReceivedWindow says why there). A thread that dies fails the batches
 * it had (the ingest keeps and retries them) and is started again at the
 * next batch.
 */
export class TelemetryWriterThread implements BatchSink {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly waiting = new Map<number, Waiting>();

  constructor(
    private readonly init: WriterInit,
    private readonly log: Logger,
  ) {}

  /** Starts the thread now rather than at the first batch: it also checkpoints the WAL for the main thread's writes. */
  start(): void {
    this.worker ??= this.spawn();
  }

  async writeReceived(batch: readonly ReceivedWindow[]): Promise<BatchResult> {
    const { packed, transfer } = packWindows(batch);
    return (await this.ask((id) => ({ type: 'write', id, windows: packed }), transfer)) as BatchResult;
  }

  /** Writes the rollups, sequences and last seen of every window committed so far. */
  async flushState(): Promise<void> {
    await this.ask((id) => ({ type: 'flush-state', id }));
  }

  private ask(message: (id: number) => ToWriter, transfer: ArrayBuffer[] = []): Promise<BatchResult | null> {
    const worker = (this.worker ??= this.spawn());
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage(message(id), transfer);
    });
  }

  /** Ends the thread once it has answered what it was sent (messages are taken in order). */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = null;
    const exited = once(worker, 'exit');
    // Held until it has exited: an unreferenced thread would let a process with nothing else to do
    // exit in the middle of this await, skipping whatever follows the stop.
    worker.ref();
    worker.postMessage({ type: 'close' } satisfies ToWriter);
    await exited;
  }

  /** Ends the thread at once, as a crash would: what it had not answered fails. For tests of that path. */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  private spawn(): Worker {
    const worker = spawnModuleWorker(import.meta.url, 'telemetry-writer-worker', { workerData: this.init });
    // The control plane's lifecycle ends it (close); an idle writer alone does not keep the process up.
    worker.unref();
    worker.on('message', (m: FromWriter) => {
      if (m.type === 'log') {
        this.log[m.level](m.fields, m.msg);
        return;
      }
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.type === 'written') w.resolve(m.result);
      else if (m.type === 'flushed') w.resolve(null);
      else w.reject(Object.assign(new Error(m.message), m.code === undefined ? {} : { code: m.code }));
    });
    worker.on('error', (err) => this.log.error({ err }, 'telemetry writer thread failed'));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      const err = new Error(`the telemetry writer thread exited (code ${code}) before answering`);
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    });
    return worker;
  }
}
