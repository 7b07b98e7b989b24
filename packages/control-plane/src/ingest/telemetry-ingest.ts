import { telemetryWindowSchema, type TelemetryWindow } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { DeviceStore } from '../store/device-store.js';
import type { TelemetryStore } from '../store/telemetry-store.js';

export interface TelemetryIngestOptions {
  /** flush when this many windows wait */
  maxBatch: number;
  /** flush at least this often */
  flushMs: number;
}

/**
 * Telemetry windows are written in batched transactions (one commit per
 * batch, not per message); (device, seq) makes a redelivered window a no-op.
 */
export class TelemetryIngest {
  private pending: { window: TelemetryWindow; receivedAt: number }[] = [];
  private timer: NodeJS.Timeout | null = null;
  readonly stats = { received: 0, inserted: 0, duplicates: 0 };

  constructor(
    private readonly store: TelemetryStore,
    private readonly devices: DeviceStore,
    private readonly log: Logger,
    private readonly opts: TelemetryIngestOptions = { maxBatch: 500, flushMs: 200 },
  ) {}

  handler() {
    return defineHandler({
      kind: 'telemetry',
      schema: telemetryWindowSchema,
      handle: (_deviceId, window) => this.enqueue(window),
    });
  }

  enqueue(window: TelemetryWindow): void {
    this.stats.received++;
    this.pending.push({ window, receivedAt: Date.now() });
    if (this.pending.length >= this.opts.maxBatch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.opts.flushMs);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const inserted = this.store.insertBatch(batch);
    this.stats.inserted += inserted;
    this.stats.duplicates += batch.length - inserted;
    const seen = new Map<string, number>();
    for (const b of batch) seen.set(b.window.deviceId, Math.max(seen.get(b.window.deviceId) ?? 0, b.receivedAt));
    for (const [id, at] of seen) this.devices.markSeen(id, at);
    this.log.debug({ windows: batch.length, inserted }, 'telemetry batch written');
  }

  /** Writes what is queued: nothing accepted is lost on shutdown. */
  stop(): void {
    this.flush();
  }
}
