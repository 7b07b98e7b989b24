import type { ModelRef } from '@perch/shared';
import { WindowAggregator, type ClosedWindow } from '../telemetry/window-aggregator.js';

/** Something that wants to see every frame's progress as it happens (metrics, the standalone printer). */
export interface FrameObserver {
  frameReceived?(cameraId: string): void;
  frameDropped?(cameraId: string): void;
  /** how late the frame reached the agent by its stream's clock */
  frameDelayed?(cameraId: string, delayMs: number): void;
  /** how long the frame waited between arriving and entering inference */
  inferenceStarted?(cameraId: string, frameAgeMs: number): void;
  /** `latencyMs`: frame arrival to result */
  frameInferred?(cameraId: string, label: string, confidence: number, latencyMs: number): void;
  inferenceError?(cameraId: string): void;
  /** shadow mode: a sampled frame both models answered (run times per frame in each worker), one the challenger had no time for, one it failed on */
  shadowCompared?(cameraId: string, championLabel: string, challengerLabel: string, championMs: number, challengerMs: number): void;
  shadowSkipped?(cameraId: string): void;
  shadowError?(cameraId: string): void;
  /** a new challenger (or none) */
  shadowSwitched?(model: ModelRef | null): void;
}

/**
 * The telemetry window aggregator that also tells observers about each
 * frame. The scheduler reports every frame to the aggregator and nowhere
 * else, so this is the one place where live counters can see the same
 * numbers the telemetry windows count, without a second set of hooks.
 */
export class ObservedWindowAggregator extends WindowAggregator {
  constructor(
    cameraIds: readonly string[],
    private readonly observers: readonly FrameObserver[],
  ) {
    super(cameraIds);
  }

  override received(cameraId: string): void {
    for (const o of this.observers) o.frameReceived?.(cameraId);
    super.received(cameraId);
  }

  override dropped(cameraId: string): void {
    for (const o of this.observers) o.frameDropped?.(cameraId);
    super.dropped(cameraId);
  }

  override frameDelayed(cameraId: string, delayMs: number): void {
    for (const o of this.observers) o.frameDelayed?.(cameraId, delayMs);
    super.frameDelayed(cameraId, delayMs);
  }

  override inferenceStarted(cameraId: string, frameAgeMs: number): void {
    for (const o of this.observers) o.inferenceStarted?.(cameraId, frameAgeMs);
    super.inferenceStarted(cameraId, frameAgeMs);
  }

  override inferred(cameraId: string, label: string, confidence: number, latencyMs: number): void {
    for (const o of this.observers) o.frameInferred?.(cameraId, label, confidence, latencyMs);
    super.inferred(cameraId, label, confidence, latencyMs);
  }

  override inferenceError(cameraId: string): void {
    for (const o of this.observers) o.inferenceError?.(cameraId);
    super.inferenceError(cameraId);
  }

  override shadowCompared(cameraId: string, championLabel: string, challengerLabel: string, championMs: number, challengerMs: number): void {
    for (const o of this.observers) o.shadowCompared?.(cameraId, championLabel, challengerLabel, championMs, challengerMs);
    super.shadowCompared(cameraId, championLabel, challengerLabel, championMs, challengerMs);
  }

  override switchShadow(challenger: { model: ModelRef; sampleRate: number } | null, now?: number): ClosedWindow | null {
    for (const o of this.observers) o.shadowSwitched?.(challenger?.model ?? null);
    return super.switchShadow(challenger, now);
  }

  override shadowSkipped(cameraId: string): void {
    for (const o of this.observers) o.shadowSkipped?.(cameraId);
    super.shadowSkipped(cameraId);
  }

  override shadowError(cameraId: string): void {
    for (const o of this.observers) o.shadowError?.(cameraId);
    super.shadowError(cameraId);
  }
}
