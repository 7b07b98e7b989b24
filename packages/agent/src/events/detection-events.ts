import { performance } from 'node:perf_hooks';
import type { DetectionEvent } from '@perch/shared';
import type { FrameResult } from '../inference/frame-scheduler.js';
import type { Logger } from '../log/logger.js';
import type { SequenceStore } from '../telemetry/sequence-store.js';
import { DetectionTracker, type Transition } from './detection-tracker.js';
import type { EventsConfig } from './events-config.js';
import type { SnapshotStore } from './snapshot-store.js';

/** Where inference results come from (the pipeline). */
export interface ResultSource {
  on(event: 'result', listener: (r: FrameResult) => void): unknown;
  off(event: 'result', listener: (r: FrameResult) => void): unknown;
}

/**
 * Where detection events go: the agent's store-and-forward outbox, which
 * validates, persists and publishes them at QoS 1 in order.
 */
export interface EventSink {
  publish(event: DetectionEvent): void | Promise<void>;
}

/** What events report to the metrics. */
export interface EventCounters {
  eventPublished(event: DetectionEvent): void;
  snapshotFailed(): void;
}

export interface DetectionEventsOptions {
  deviceId: string;
  config: EventsConfig;
  /** told how old the frame behind a new/update event was when the event was handed over (telemetry's frame age at publish) */
  onHandedOver?: (cameraId: string, frameAgeMs: number) => void;
}

/** performance.now() as Unix ms: frames are timed with the monotonic clock, events carry wall time. */
const unixMs = (perfNow: number) => Math.round(performance.timeOrigin + perfNow);

/**
 * Detection events from inference results: the tracker decides, then each
 * event gets the next number of its own persisted sequence (separate from
 * telemetry's), a JPEG snapshot of its frame for `new` and `update`, and is
 * handed to the sink. Events are numbered one at a time, in the order they
 * were decided, so `new` always precedes its `update`s and `end`; a slow
 * sink is not awaited in that queue, so it cannot hold later events back.
 */
export class DetectionEvents {
  private readonly tracker: DetectionTracker;
  private queue: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<void>>();
  /** the last snapshot of each open event, named again in its `end` */
  private readonly lastSnapshot = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private started = false;

  constructor(
    private readonly opts: DetectionEventsOptions,
    private readonly source: ResultSource,
    private readonly seq: SequenceStore,
    private readonly sink: EventSink,
    private readonly snapshots: SnapshotStore | null,
    private readonly log: Logger,
    private readonly counters?: EventCounters,
  ) {
    this.tracker = new DetectionTracker(opts.config);
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.seq.load();
    await this.snapshots?.start();
    this.started = true;
    this.source.on('result', this.onResult);
    // Ends events on cameras that stopped sending frames: no frame would end them.
    const tickMs = Math.min(1000, Math.max(50, this.opts.config.disappearMs / 4));
    this.timer = setInterval(() => this.enqueue(this.tracker.tick(Date.now()), null), tickMs);
  }

  /** Ends the open events and waits (briefly: the link may be down) for them to be handed over. */
  async stop(waitMs = 2000): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.source.off('result', this.onResult);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.enqueue(this.tracker.endAll(), null);
    let timeout: NodeJS.Timeout | undefined;
    const deadline = new Promise((r) => (timeout = setTimeout(r, waitMs)));
    await Promise.race([this.queue.then(() => Promise.allSettled([...this.inFlight])), deadline]);
    clearTimeout(timeout);
  }

  /** Resolves once every event decided so far has been numbered and handed to the sink; for tests. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private readonly onResult = (r: FrameResult): void => {
    const transitions = this.tracker.observe({ cameraId: r.cameraId, label: r.label, confidence: r.confidence, at: unixMs(r.arrivedAt) });
    if (transitions.length > 0) this.enqueue(transitions, r);
  };

  private enqueue(transitions: Transition[], frame: FrameResult | null): void {
    for (const t of transitions) this.queue = this.queue.then(() => this.send(t, t.kind === 'end' ? null : frame));
  }

  private async send(t: Transition, frame: FrameResult | null): Promise<void> {
    let seq: number;
    try {
      seq = await this.seq.allocate();
    } catch (err) {
      this.log.error({ err: (err as Error).message, eventId: t.eventId, kind: t.kind }, 'could not allocate an event sequence number; event lost');
      return;
    }
    const snapshot = frame ? await this.snapshot(t, seq, frame) : this.lastSnapshot.get(t.eventId);
    if (t.kind === 'end') this.lastSnapshot.delete(t.eventId);
    else if (snapshot !== undefined) this.lastSnapshot.set(t.eventId, snapshot);
    const event: DetectionEvent = { deviceId: this.opts.deviceId, seq, ...t, ...(snapshot !== undefined ? { snapshot } : {}) };
    this.log.info({ seq, eventId: t.eventId, kind: t.kind, camera: t.cameraId, label: t.label, topConfidence: t.topConfidence, snapshot }, 'detection event');
    // Through a promise, so a sink that throws is handled like one that rejects.
    const p = Promise.resolve(event).then((e) => this.sink.publish(e)).then(
      () => {
        this.counters?.eventPublished(event);
        if (frame) this.opts.onHandedOver?.(frame.cameraId, performance.now() - frame.arrivedAt);
      },
      (err: Error) => this.log.warn({ seq, eventId: t.eventId, err: err.message }, 'detection event not published'),
    );
    const tracked = p.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async snapshot(t: Transition, seq: number, frame: FrameResult): Promise<string | undefined> {
    if (!this.snapshots) return undefined;
    try {
      return await this.snapshots.write(`${t.cameraId}-${seq}-${t.kind}.jpg`, frame.frame, frame.width, frame.height);
    } catch (err) {
      this.counters?.snapshotFailed();
      this.log.warn({ seq, eventId: t.eventId, err: (err as Error).message }, 'event snapshot not written; event sent without it');
      return undefined;
    }
  }
}
