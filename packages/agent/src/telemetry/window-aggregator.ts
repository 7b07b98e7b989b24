import { emptyHistogram, histogramQuantile, LATENCY_SPEC, observe, type CameraErrorKind, type CameraWindow, type ModelRef, type ShadowWindow } from '@perch/shared';
import { ShadowComparison } from './shadow-comparison.js';

type CameraHealthWindow = NonNullable<CameraWindow['health']>;

/** A telemetry window before it gets its sequence number. */
export interface ClosedWindow {
  windowStart: number;
  windowEnd: number;
  model: ModelRef | null;
  cameras: CameraWindow[];
  shadow?: ShadowWindow;
}

function emptyCamera(cameraId: string): CameraWindow {
  return {
    cameraId,
    framesReceived: 0,
    framesInferred: 0,
    framesDropped: 0,
    inferenceErrors: 0,
    classCounts: {},
    confidence: emptyHistogram('confidence.v1'),
    latencyMs: emptyHistogram(LATENCY_SPEC),
    frameAgeMs: { inference: emptyHistogram(LATENCY_SPEC) },
  };
}

/**
 * Per-camera statistics of the current window: frames received, inferred,
 * dropped, errors, top-1 class counts and the contract's fixed-bin
 * confidence and latency histograms. One window covers one model: a model
 * switch closes the window early.
 */
export class WindowAggregator {
  private cameras = new Map<string, CameraWindow>();
  private windowStart: number;
  private model: ModelRef | null = null;
  /** whether a model was active at any time in this window */
  private hadModel = false;
  /** supervised cameras: the state carries over from window to window, the counts do not */
  private health = new Map<string, CameraHealthWindow>();
  /** the challenger in shadow mode and its sample rate, if any */
  private challenger: { model: ModelRef; sampleRate: number } | null = null;
  /** this window's comparison of champion and challenger */
  private comparison: ShadowComparison | null = null;

  constructor(
    private readonly cameraIds: readonly string[],
    now: number = Date.now(),
  ) {
    this.windowStart = now;
    this.reset();
  }

  get activeModel(): ModelRef | null {
    return this.model;
  }

  received(cameraId: string): void {
    this.camera(cameraId).framesReceived++;
  }

  dropped(cameraId: string): void {
    this.camera(cameraId).framesDropped++;
  }

  inferred(cameraId: string, label: string, confidence: number, latencyMs: number): void {
    const c = this.camera(cameraId);
    c.framesInferred++;
    c.classCounts[label] = (c.classCounts[label] ?? 0) + 1;
    // Clamped: float rounding can put a softmax a hair outside [0, 1].
    observe(c.confidence, Math.min(1, Math.max(0, confidence)));
    observe(c.latencyMs, Math.max(0, latencyMs));
  }

  /** How long the frame waited between arriving from ffmpeg and entering inference. */
  inferenceStarted(cameraId: string, frameAgeMs: number): void {
    const c = this.camera(cameraId);
    c.frameAgeMs ??= { inference: emptyHistogram(LATENCY_SPEC) };
    observe(c.frameAgeMs.inference, Math.max(0, frameAgeMs));
  }

  /** How late a frame reached the agent by its stream's clock (see StreamClock). */
  frameDelayed(cameraId: string, delayMs: number): void {
    const c = this.camera(cameraId);
    c.frameAgeMs ??= { inference: emptyHistogram(LATENCY_SPEC) };
    c.frameAgeMs.capture ??= emptyHistogram(LATENCY_SPEC);
    observe(c.frameAgeMs.capture, Math.max(0, delayMs));
  }

  /** How old a frame was when an event about it went to the outbox. */
  eventPublished(cameraId: string, frameAgeMs: number): void {
    const c = this.camera(cameraId);
    c.frameAgeMs ??= { inference: emptyHistogram(LATENCY_SPEC) };
    c.frameAgeMs.publish ??= emptyHistogram(LATENCY_SPEC);
    observe(c.frameAgeMs.publish, Math.max(0, frameAgeMs));
  }

  inferenceError(cameraId: string): void {
    this.camera(cameraId).inferenceErrors++;
  }

  /** A frame both champion and challenger answered (shadow mode); run times per frame in each worker. */
  shadowCompared(cameraId: string, championLabel: string, challengerLabel: string, championMs: number, challengerMs: number): void {
    this.comparison?.compared(cameraId, championLabel, challengerLabel, championMs, challengerMs);
  }

  /** A frame picked for the challenger that it had no time for. */
  shadowSkipped(_cameraId: string): void {
    this.comparison?.skipped();
  }

  /** A frame picked for the challenger that it failed on. */
  shadowError(_cameraId: string): void {
    this.comparison?.failed();
  }

  /** A supervised camera's health changed; it holds until the next change. */
  cameraState(cameraId: string, state: CameraHealthWindow['state']): void {
    this.cameraHealth(cameraId).state = state;
  }

  /** ffmpeg was restarted for this camera. */
  cameraRestarted(cameraId: string): void {
    this.cameraHealth(cameraId).restarts++;
  }

  /** An ffmpeg run failed or stalled; the window keeps the latest cause. */
  cameraIncident(cameraId: string, kind: CameraErrorKind, message: string, stalled: boolean): void {
    const h = this.cameraHealth(cameraId);
    if (stalled) h.stalls++;
    h.errorKind = kind;
    h.lastError = message.slice(0, 1000);
  }

  /**
   * Closes the current window and opens the next. Null when no model was
   * active during the whole window: with no cameras running there is
   * nothing to say, and a stream of empty windows would only cost bandwidth.
   */
  close(now: number = Date.now()): ClosedWindow | null {
    const window: ClosedWindow = {
      windowStart: this.windowStart,
      windowEnd: Math.max(now, this.windowStart),
      model: this.model,
      cameras: [...this.cameras.values()].map((c) => {
        const h = this.health.get(c.cameraId);
        return h ? { ...c, health: { ...h } } : c;
      }),
      ...(this.comparison ? { shadow: this.comparison.section() } : {}),
    };
    const worth = this.hadModel || window.cameras.some((c) => c.framesReceived > 0 || c.inferenceErrors > 0);
    this.windowStart = window.windowEnd;
    this.reset();
    return worth ? window : null;
  }

  /** Switches model, closing the current window (returned, as close() does). */
  switchModel(model: ModelRef | null, now: number = Date.now()): ClosedWindow | null {
    const closed = this.close(now);
    this.model = model;
    this.hadModel = model !== null;
    return closed;
  }

  /** Switches challenger (or its sample rate), closing the current window: one window, one comparison. */
  switchShadow(challenger: { model: ModelRef; sampleRate: number } | null, now: number = Date.now()): ClosedWindow | null {
    const closed = this.close(now);
    this.challenger = challenger;
    this.comparison = challenger ? new ShadowComparison(challenger.model, challenger.sampleRate) : null;
    return closed;
  }

  private reset(): void {
    this.comparison = this.challenger ? new ShadowComparison(this.challenger.model, this.challenger.sampleRate) : null;
    this.cameras = new Map(this.cameraIds.map((id) => [id, emptyCamera(id)]));
    for (const [id, h] of this.health) this.health.set(id, { state: h.state, restarts: 0, stalls: 0 });
    this.hadModel = this.model !== null;
  }

  private cameraHealth(cameraId: string): CameraHealthWindow {
    let h = this.health.get(cameraId);
    if (!h) {
      h = { state: 'offline', restarts: 0, stalls: 0 };
      this.health.set(cameraId, h);
    }
    this.camera(cameraId); // a camera with health appears in the window even before its first frame
    return h;
  }

  private camera(cameraId: string): CameraWindow {
    let c = this.cameras.get(cameraId);
    if (!c) {
      c = emptyCamera(cameraId);
      this.cameras.set(cameraId, c);
    }
    return c;
  }
}

/** The one-line-per-camera log summary the README promises: predictions visible in the log. */
export function summarizeCamera(c: CameraWindow): string {
  const classes = Object.entries(c.classCounts)
    .sort((a, b) => b[1] - a[1])
    .map(([label, n]) => `${label} ${n}`);
  const parts = [`${c.framesInferred} inferred`, ...classes];
  if (c.framesDropped > 0) parts.push(`${c.framesDropped} dropped`);
  if (c.inferenceErrors > 0) parts.push(`${c.inferenceErrors} errors`);
  const p95 = histogramQuantile(c.latencyMs, 0.95);
  if (!Number.isNaN(p95)) parts.push(`p95 latency ${Math.round(p95)} ms`);
  return `camera ${c.cameraId}: ${parts.join(', ')}`;
}
