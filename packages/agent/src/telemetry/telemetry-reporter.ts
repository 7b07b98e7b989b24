import type { ModelRef, TelemetryWindow } from '@perch/shared';
import type { Logger } from '../log/logger.js';
import type { Outbox, OutboxWindowStats } from '../outbox/outbox.js';
import { EventLoopLag } from './event-loop-lag.js';
import type { SequenceStore } from './sequence-store.js';
import { summarizeCamera, type ClosedWindow, type WindowAggregator } from './window-aggregator.js';

/** Where finished windows go: the store-and-forward outbox, which publishes them when it can. */
export type TelemetryOutbox = Pick<Outbox, 'enqueue' | 'takeWindowStats'>;

/** Closes a window every `windowSeconds`, numbers it, logs a summary and hands it to the outbox. */
export class TelemetryReporter {
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  /** the main thread's responsiveness, reported with every window */
  private readonly lag = new EventLoopLag();

  constructor(
    private readonly deviceId: string,
    readonly aggregator: WindowAggregator,
    private readonly seq: SequenceStore,
    private readonly outbox: TelemetryOutbox,
    private readonly windowMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.timer) return;
    this.lag.start();
    this.timer = setInterval(() => this.emit(this.aggregator.close()), this.windowMs);
  }

  /**
   * Closes the last window and waits (briefly: a sequence number is a disk
   * write) for it to be in the outbox, which sends it now or after a restart.
   */
  async stop(waitMs = 2000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.lag.stop();
    this.emit(this.aggregator.close());
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => (timeout = setTimeout(r, waitMs)))]);
    clearTimeout(timeout);
  }

  /** A model switch ends the window early: one window, one model. */
  switchModel(model: ModelRef | null): void {
    this.emit(this.aggregator.switchModel(model));
  }

  /** A new challenger in shadow mode (or none, or a new sample rate) ends the window early too. */
  switchShadow(challenger: { model: ModelRef; sampleRate: number } | null): void {
    this.emit(this.aggregator.switchShadow(challenger));
  }

  private emit(closed: ClosedWindow | null): void {
    if (!closed) return;
    // Taken when the window closes, so drops are counted in the window they happened in.
    const outbox = this.outbox.takeWindowStats();
    const eventLoopLagMs = this.lag.takeWindow();
    const p = this.send({ ...closed, eventLoopLagMs }, outbox).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async send(closed: ClosedWindow & Pick<TelemetryWindow, 'eventLoopLagMs'>, outbox: OutboxWindowStats): Promise<void> {
    let window: TelemetryWindow;
    try {
      window = { deviceId: this.deviceId, seq: await this.seq.allocate(), ...closed, outbox };
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'could not allocate a telemetry sequence number; window lost');
      return;
    }
    const model = closed.model ? `${closed.model.name}@${closed.model.version}` : 'none';
    for (const c of window.cameras) this.log.info({ seq: window.seq, model, camera: c.cameraId }, summarizeCamera(c));
    try {
      // Drops (a full outbox or disk) are counted by the outbox and reported in the next windows.
      this.outbox.enqueue('telemetry', window);
    } catch (err) {
      this.log.error({ seq: window.seq, err: (err as Error).message }, 'telemetry window not accepted by the outbox; lost');
    }
  }
}
