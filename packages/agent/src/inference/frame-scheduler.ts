import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { ModelMetadata } from '@perch/shared';
import { LatestFrameSlot } from '../camera/latest-frame-slot.js';
import type { Logger } from '../log/logger.js';
import type { WindowAggregator } from '../telemetry/window-aggregator.js';
import type { BatchResult, InferenceRunner } from './inference-runner.js';
import { top1 } from './postprocess.js';
import { RunningEstimate } from './running-estimate.js';

const ERROR_LOG_INTERVAL_MS = 10_000;

/** One camera frame's inference outcome, for consumers such as events and snapshots. */
export interface FrameResult {
  cameraId: string;
  label: string;
  labelIndex: number;
  confidence: number;
  probabilities: Float32Array;
  /** the rgb24 frame at the model's input size, as the camera delivered it; the scheduler keeps no reference */
  frame: Uint8Array;
  width: number;
  height: number;
  /** performance.now() when the frame arrived from ffmpeg, and when its result came back */
  arrivedAt: number;
  finishedAt: number;
}

type SchedulerEvents = {
  result: [result: FrameResult];
  /** frames of these cameras were taken from their slots and handed to the worker */
  dispatched: [cameraIds: string[]];
  /** one run of the current runner ended, with its frames and the worker's run time or the error */
  ran: [run: RunOutcome];
};

/** A champion's answer on a frame a ChampionTap picked. */
export interface ChampionAnswer {
  cameraId: string;
  label: string;
  /** the rgb24 frame at the champion's input size; read at once, not kept */
  frame: Uint8Array;
  /** a copy of the champion's preprocessed input, when the tap asked for it */
  input: Float32Array | undefined;
  /** the champion's run time per frame in its worker */
  runMs: number;
  champion: ModelMetadata;
}

/**
 * Sees a sample of the champion's frames, for a challenger in shadow mode.
 * It is told about a run's frames only after the champion's answers on them
 * went out, so nothing it does can hold the champion up.
 */
export interface ChampionTap {
  /** At hand-over: whether this frame goes to the challenger too; 'input' also asks for a copy of its preprocessed input. */
  pick(cameraId: string, champion: ModelMetadata): 'frame' | 'input' | false;
  /** The champion's answers on the picked frames of one run (a batch may carry several cameras' frames). */
  championAnswered(answers: ChampionAnswer[]): void;
}

/** What the health window of a new model watches. */
export type RunOutcome = { frames: number; ok: true; inferenceMs: number } | { frames: number; ok: false; error: string };

interface Waiting {
  cameraId: string;
  frame: Uint8Array;
  arrivedAt: number;
}

export interface SchedulerOptions {
  /** how long a batch may wait for more cameras' frames (ms); 0 runs whatever is there */
  maxBatchDelayMs: number;
  /**
   * Runs handed to the worker at once, 1 or 2 (default 2). With 2, the next
   * run is prepared and handed over just before the one going is expected to
   * end, so the worker never waits for the main thread between runs.
   */
  pipelineDepth?: number;
}

/**
 * How long before the run in the worker is expected to end the next one is
 * handed over, on top of its preprocessing time: the thread hop plus a
 * timer's lateness. Earlier costs frame freshness, later leaves the worker idle.
 */
const HANDOVER_MARGIN_MS = 1.5;

/**
 * Feeds one inference runner from every camera: each camera has a slot for
 * its latest frame, and the loop takes the freshest waiting frame of the next
 * camera in turn (round-robin), so a fast camera cannot starve a slow one.
 * When the model's batch dimension is dynamic a run carries the latest frame
 * of several cameras (Triton's dynamic batching gave ~3.7x throughput at flat
 * latency). While the worker runs one batch the next is taken as late as it
 * can be — just before the worker is expected to be free — so the worker is
 * kept busy without running stale frames.
 */
export class FrameScheduler extends EventEmitter<SchedulerEvents> {
  private readonly slots = new Map<string, LatestFrameSlot>();
  private order: string[] = [];
  private nextIndex = 0;
  private runner: InferenceRunner | null = null;
  private running = false;
  private wake: (() => void) | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly runs = new Set<Promise<void>>();
  private lastErrorLog = 0;
  private readonly depth: number;
  /** performance.now() when the worker began (or will begin) the run now going */
  private currentRunStartedAt = 0;
  private readonly runMs = new RunningEstimate();
  private readonly preprocessMs = new RunningEstimate();
  private tap: ChampionTap | null = null;

  constructor(
    private readonly aggregator: WindowAggregator,
    private readonly log: Logger,
    private readonly opts: SchedulerOptions = { maxBatchDelayMs: 0 },
  ) {
    super();
    this.depth = Math.min(2, Math.max(1, opts.pipelineDepth ?? 2));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Stops taking frames and waits for the runs handed over; no result is emitted after this. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    await Promise.allSettled([...this.runs]);
    this.clear();
  }

  setRunner(runner: InferenceRunner | null): void {
    this.runner = runner;
    this.runMs.reset();
    this.preprocessMs.reset();
    this.wake?.();
  }

  /** A challenger's view of the champion's frames (shadow mode), or none. */
  setTap(tap: ChampionTap | null): void {
    this.tap = tap;
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

  private get anyWaiting(): boolean {
    for (const slot of this.slots.values()) if (slot.hasFrame) return true;
    return false;
  }

  /** The latest waiting frame of up to `max` cameras not in `skip`, round-robin from where the last pick stopped. */
  private pickMany(max: number, skip: ReadonlySet<string> = new Set()): Waiting[] {
    const out: Waiting[] = [];
    const n = this.order.length;
    const from = this.nextIndex;
    for (let i = 0; i < n && out.length < max; i++) {
      const idx = (from + i) % n;
      const cameraId = this.order[idx] as string;
      if (skip.has(cameraId)) continue;
      const waiting = this.slots.get(cameraId)?.take();
      if (waiting) {
        out.push({ cameraId, ...waiting });
        this.nextIndex = (idx + 1) % n;
      }
    }
    return out;
  }

  /** Resolves after `ms` (never, when omitted) or at the next offer, result or stop, whichever comes first. */
  private pause(ms?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(), Math.max(0, ms));
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      this.wake = done;
    });
  }

  /**
   * With a batching model and an idle worker, waits a little for the other
   * cameras' frames so one run carries several — but never longer than
   * maxBatchDelayMs after the oldest frame of the batch arrived, and only
   * while some camera's next frame is due before then: cameras out of phase
   * would make every frame wait the whole delay for nothing.
   */
  private async fill(batch: Waiting[], max: number): Promise<void> {
    const want = Math.min(max, this.order.length);
    const first = batch[0];
    if (!first || this.opts.maxBatchDelayMs <= 0) return;
    const deadline = first.arrivedAt + this.opts.maxBatchDelayMs;
    while (this.running && batch.length < want && performance.now() < deadline) {
      const taken = new Set(batch.map((b) => b.cameraId));
      const now = performance.now();
      if (!this.order.some((id) => !taken.has(id) && this.slots.get(id)?.expectsFrameBy(deadline, now))) return;
      await this.pause(deadline - performance.now());
      batch.push(...this.pickMany(want - batch.length, taken));
    }
  }

  /** Whether the next run may be handed over now that `runner` has one going; else waits a while and says no. */
  private async handoverDue(): Promise<boolean> {
    if (!this.anyWaiting) {
      await this.pause();
      return false;
    }
    // Before the first result nothing is known: hand over at once.
    const due = this.currentRunStartedAt + (this.runMs.value ?? 0) - (this.preprocessMs.value ?? 0) - HANDOVER_MARGIN_MS;
    const now = performance.now();
    if (now >= due) return true;
    await this.pause(due - now);
    return false;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const runner = this.runner;
      if (!runner || runner.inFlight >= this.depth) {
        await this.pause();
        continue;
      }
      const busy = runner.inFlight > 0;
      if (busy && !(await this.handoverDue())) continue;
      if (!this.running || runner !== this.runner) continue;
      const batch = this.pickMany(runner.maxBatch);
      if (batch.length === 0) {
        await this.pause();
        continue;
      }
      // A batch waits to fill only when the worker would otherwise be idle anyway.
      if (!busy && runner.maxBatch > 1) await this.fill(batch, runner.maxBatch);
      this.dispatch(runner, batch);
    }
  }

  private dispatch(runner: InferenceRunner, batch: Waiting[]): void {
    const { width, height } = runner.metadata.input;
    // Frames from before a model switch have the old size.
    const frames = batch.filter((b) => b.frame.length === width * height * 3);
    if (frames.length === 0) return;
    const handedAt = performance.now();
    if (runner.inFlight === 0) this.currentRunStartedAt = handedAt;
    const tap = this.tap;
    const picks = tap ? frames.map((f) => tap.pick(f.cameraId, runner.metadata)) : undefined;
    const run = runner.runBatch(frames.map((f) => f.frame), picks?.map((p) => p === 'input')).then(
      (r) => this.onDone(runner, frames, r, tap && picks ? { tap, picks } : undefined),
      (err: Error) => this.onFailed(runner, frames, err),
    );
    this.runs.add(run);
    void run.finally(() => {
      this.runs.delete(run);
      this.wake?.();
    });
    this.emit('dispatched', frames.map((f) => f.cameraId));
  }

  private onDone(runner: InferenceRunner, frames: Waiting[], r: BatchResult, shadow?: { tap: ChampionTap; picks: ('frame' | 'input' | false)[] }): void {
    if (!this.running || runner !== this.runner) return; // stopped, or the model changed while these frames ran
    const endedAt = r.startedAt + r.inferenceMs;
    // The next run handed over (if any) started when this one ended.
    if (runner.inFlight > 0) this.currentRunStartedAt = endedAt;
    this.runMs.add(r.inferenceMs);
    this.preprocessMs.add(r.preprocessMs);
    this.emit('ran', { frames: r.results.length, ok: true, inferenceMs: r.inferenceMs });
    const finishedAt = performance.now();
    const { width, height } = runner.metadata.input;
    const answers: ChampionAnswer[] = [];
    r.results.forEach((res, i) => {
      const f = frames[i];
      if (!f) return;
      this.aggregator.inferenceStarted(f.cameraId, r.startedAt - f.arrivedAt);
      const best = top1(res.probabilities);
      const label = runner.metadata.labels[best.index] ?? `#${best.index}`;
      this.aggregator.inferred(f.cameraId, label, best.confidence, finishedAt - f.arrivedAt);
      this.emit('result', {
        cameraId: f.cameraId,
        label,
        labelIndex: best.index,
        confidence: best.confidence,
        probabilities: res.probabilities,
        frame: res.frame,
        width,
        height,
        arrivedAt: f.arrivedAt,
        finishedAt,
      });
      if (shadow?.picks[i]) answers.push({ cameraId: f.cameraId, label, frame: res.frame, input: res.input, runMs: r.inferenceMs / r.results.length, champion: runner.metadata });
    });
    if (shadow && answers.length > 0) shadow.tap.championAnswered(answers);
  }

  private onFailed(runner: InferenceRunner, frames: Waiting[], err: Error): void {
    if (!this.running || runner !== this.runner) return;
    for (const f of frames) this.aggregator.inferenceError(f.cameraId);
    this.emit('ran', { frames: frames.length, ok: false, error: err.message });
    const now = performance.now();
    if (now - this.lastErrorLog > ERROR_LOG_INTERVAL_MS) {
      this.lastErrorLog = now;
      this.log.warn({ cameras: frames.map((f) => f.cameraId), err: err.message }, 'inference failed');
    }
  }
}
