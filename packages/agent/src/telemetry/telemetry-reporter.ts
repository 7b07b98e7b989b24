import type { ModelRef, TelemetryWindow } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import type { SequenceStore } from './sequence-store.js';
import type { TelemetryPublisher } from './telemetry-publisher.js';
import { summarizeCamera, type ClosedWindow, type WindowAggregator } from './window-aggregator.js';

/** Closes a window every `windowSeconds`, numbers it, logs a summary and publishes it. */
export class TelemetryReporter {
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();

  constructor(
    private readonly deviceId: string,
    readonly aggregator: WindowAggregator,
    private readonly seq: SequenceStore,
    private readonly publisher: TelemetryPublisher,
    private readonly windowMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.emit(this.aggregator.close()), this.windowMs);
  }

  /**
   * Closes the last window and waits (briefly: with the link down a QoS 1
   * publish would wait for ever) for it to be handed to the broker.
   */
  async stop(waitMs = 2000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.emit(this.aggregator.close());
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => (timeout = setTimeout(r, waitMs)))]);
    clearTimeout(timeout);
  }

  /** A model switch ends the window early: one window, one model. */
  switchModel(model: ModelRef | null): void {
    this.emit(this.aggregator.switchModel(model));
  }

  private emit(closed: ClosedWindow | null): void {
    if (!closed) return;
    const p = this.send(closed).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async send(closed: ClosedWindow): Promise<void> {
    let window: TelemetryWindow;
    try {
      window = { deviceId: this.deviceId, seq: await this.seq.allocate(), ...closed };
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'could not allocate a telemetry sequence number; window lost');
      return;
    }
    const model = closed.model ? `${closed.model.name}@${closed.model.version}` : 'none';
    for (const c of window.cameras) this.log.info({ seq: window.seq, model, camera: c.cameraId }, summarizeCamera(c));
    try {
      await this.publisher.publish(window);
    } catch (err) {
      this.log.warn({ seq: window.seq, err: (err as Error).message }, 'telemetry window not published');
    }
  }
}
