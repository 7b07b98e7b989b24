import type { Logger } from 'pino';
import type { DevicePresenceStore } from '../store/device-presence-store.js';

export interface PresenceSweeperOptions {
  /** a device heard from longer ago than this is marked offline, reason 'silent' */
  silentAfterMs: number;
  /** how often to look */
  intervalMs: number;
  /**
   * Whether the broker holds a connection from this device now. A connected
   * device is alive whatever it sends (an agent with no model sends no
   * windows); the broker's keepalive drops a dead connection and publishes
   * its will. Without it (an external broker) silence alone decides.
   */
  isConnected?: (deviceId: string) => boolean;
}

/**
 * Marks devices offline that went silent without a will message: the
 * control plane was down when they disconnected (its broker died with it),
 * or an external broker lost the will. Their next message makes them online
 * again (the ingest's last-seen update, or their status message).
 */
export class PresenceSweeper {
  private timer: NodeJS.Timeout | null = null;
  readonly stats = { sweeps: 0, markedSilent: 0 };

  constructor(
    private readonly presence: DevicePresenceStore,
    private readonly opts: PresenceSweeperOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass; returns the devices it marked silent. */
  sweep(now = Date.now()): string[] {
    const before = now - this.opts.silentAfterMs;
    const isConnected = this.opts.isConnected;
    const candidates = this.presence.silentSince(before).filter((id) => !isConnected?.(id));
    const marked = candidates.length > 0 ? this.presence.markSilent(candidates, before) : [];
    this.stats.sweeps++;
    this.stats.markedSilent += marked.length;
    if (marked.length > 0) {
      this.log.info({ devices: marked.length, first: marked.slice(0, 10), silentAfterMs: this.opts.silentAfterMs }, 'devices silent: marked offline');
    }
    return marked;
  }
}
