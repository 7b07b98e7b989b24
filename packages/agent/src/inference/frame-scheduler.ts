import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { LatestFrameSlot } from '../camera/latest-frame-slot.js';
import type { Logger } from '../log/logger.js';
import type { WindowAggregator } from '../telemetry/window-aggregator.js';
import type { InferenceRunner } from './inference-runner.js';
import { top1 } from './postprocess.js';

const ERROR_LOG_INTERVAL_MS = 10_000;

/** One camera frame's inference outcome, for consumers such as events and snapshots. */
export interface FrameResult {
  cameraId: string;
  label: string;
  labelIndex: number;
  confidence: number;
  probabilities: Float32Array;
  /** the rgb24 frame at the model's input size; owned by the listener from here on */
  frame: Uint8Array;
  width: number;
  height: number;
  /** performance.now() when the frame arrived from ffmpeg, and when its result came back */
  arrivedAt: number;
  finishedAt: number;
}

type SchedulerEvents = { result: [result: FrameResult] };

/**
 * Feeds one inference runner from every camera: each camera has a slot for
 * its latest frame, and the loop takes the freshest waiting frame of the next
 * camera in turn (round-robin), so a fast camera cannot starve a slow one.
 * One frame is in the worker at a time; batching across cameras slots in here.
 */
export class FrameScheduler extends EventEmitter<SchedulerEvents> {
  private readonly slots = new Map<string, LatestFrameSlot>();
  private order: string[] = [];
  private nextIndex = 0;
  private runner: InferenceRunner | null = null;
  private running = false;
  private wake: (() => void) | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  private lastErrorLog = 0;

  constructor(
    private readonly aggregator: WindowAggregator,
    private readonly log: Logger,
  ) {
    super();
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    this.clear();
  }

  setRunner(runner: InferenceRunner | null): void {
    this.runner = runner;
    this.wake?.();
  }

  /** A whole frame from a camera; replaces (drops) one still waiting. */
  offer(cameraId: string, frame: Uint8Array, arrivedAt: number): void {
    let slot = this.slots.get(cameraId);
    if (!slot) {
      slot = new LatestFrameSlot();
      this.slots.set(cameraId, slot);
      this.order = [...this.slots.keys()];
    }
    this.aggregator.received(cameraId);
    if (slot.put({ frame, arrivedAt })) this.aggregator.dropped(cameraId);
    this.wake?.();
  }

  /** Forgets waiting frames, e.g. of the old size when the model changes. */
  clear(): void {
    for (const slot of this.slots.values()) slot.clear();
  }

  private pick(): { cameraId: string; frame: Uint8Array; arrivedAt: number } | null {
    for (let i = 0; i < this.order.length; i++) {
      const idx = (this.nextIndex + i) % this.order.length;
      const cameraId = this.order[idx] as string;
      const waiting = this.slots.get(cameraId)?.take();
      if (waiting) {
        this.nextIndex = (idx + 1) % this.order.length;
        return { cameraId, ...waiting };
      }
    }
    return null;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const runner = this.runner;
      const next = runner ? this.pick() : null;
      if (!runner || !next) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      const { width, height } = runner.metadata.input;
      if (next.frame.length !== width * height * 3) continue; // from before a model switch
      try {
        this.aggregator.inferenceStarted(next.cameraId, performance.now() - next.arrivedAt);
        const result = await runner.run(next.frame);
        if (runner !== this.runner) continue; // the model changed while this frame ran
        const best = top1(result.probabilities);
        const label = runner.metadata.labels[best.index] ?? `#${best.index}`;
        const finishedAt = performance.now();
        this.aggregator.inferred(next.cameraId, label, best.confidence, finishedAt - next.arrivedAt);
        this.emit('result', {
          cameraId: next.cameraId,
          label,
          labelIndex: best.index,
          confidence: best.confidence,
          probabilities: result.probabilities,
          frame: result.frame,
          width,
          height,
          arrivedAt: next.arrivedAt,
          finishedAt,
        });
      } catch (err) {
        if (runner !== this.runner) continue;
        this.aggregator.inferenceError(next.cameraId);
        const now = performance.now();
        if (now - this.lastErrorLog > ERROR_LOG_INTERVAL_MS) {
          this.lastErrorLog = now;
          this.log.warn({ camera: next.cameraId, err: (err as Error).message }, 'inference failed');
        }
      }
    }
  }
}
