import { performance } from 'node:perf_hooks';
import { cameraHealthSchema, deploymentPhaseSchema, HISTOGRAM_SPECS, type CameraState, type DetectionEvent, type ModelRef, type ReportedState } from '@perch/shared';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AGENT_VERSION } from '../agent-version.js';
import type { FrameObserver } from './frame-observer.js';

/** What the metrics read at scrape time rather than count as it happens. */
export interface RuntimeView {
  activeModel(): ModelRef | null;
  cameraStates(): CameraState[];
  /** records waiting in the store-and-forward outbox; absent where there is none */
  outboxPending?: () => number;
  /** the challenger running in shadow mode, if any */
  shadowModel?: () => ModelRef | null;
  /** whether the decoders are kept off inference's CPUs, and the CPU cores they used lately (see DecoderCpus) */
  decoders?: () => { confined: boolean; coresUsed: number };
}

export const METRIC_PREFIX = 'perch_agent_';

/**
 * The contract's coarse latency bins (`latency-ms.v1`, 22 edges) in seconds: every bucket is a
 * series per camera in Prometheus, so the fine `latency-ms.v2` bins stay in the telemetry windows.
 */
const LATENCY_BUCKETS = HISTOGRAM_SPECS['latency-ms.v1'].edges.map((ms) => ms / 1000);
const CAMERA_STATES = cameraHealthSchema.options;

/**
 * The agent's Prometheus metrics, in a registry of its own (never
 * prom-client's global one: two agents in one process must not share
 * counters). Frame counters move as frames move (it is a FrameObserver);
 * camera and model state are read from the runtime at scrape time. Every name
 * is listed in docs/agent-metrics.md.
 */
export class AgentMetrics implements FrameObserver {
  readonly registry = new Registry();
  private readonly lastFrame = new Map<string, number>();
  private readonly lastResult = new Map<string, number>();
  private readonly received: Counter<'camera'>;
  private readonly dropped: Counter<'camera'>;
  private readonly inferred: Counter<'camera'>;
  private readonly predictions: Counter<'camera' | 'label'>;
  private readonly errors: Counter<'camera'>;
  private readonly latency: Histogram<'camera'>;
  private readonly frameAge: Histogram<'camera'>;
  private readonly captureDelay: Histogram<'camera'>;
  private readonly lastFrameTime: Gauge<'camera'>;
  private readonly events: Counter<'camera' | 'kind'>;
  private readonly snapshotErrors: Counter;
  private readonly deploymentPhase: Gauge<'phase'>;
  private readonly deploymentGeneration: Gauge;
  private readonly deploymentTransitions: Counter<'phase'>;
  private readonly healthWindows: Counter<'outcome'>;
  private readonly comparedFrames: Counter<'camera'>;
  private readonly agreedFrames: Counter<'camera'>;
  private readonly skippedShadowFrames: Counter<'camera'>;
  private readonly shadowErrorFrames: Counter<'camera'>;
  private readonly shadowRunTime: Histogram<'role'>;
  /** compared and agreed frames of the challenger running now, for the agreement gauge */
  private shadowTally = { sha256: '', compared: 0, agreed: 0 };
  private lastDeployment: { phase: string; generation: number } | null = null;

  constructor(view: RuntimeView) {
    const registers = [this.registry];
    const name = (n: string) => `${METRIC_PREFIX}${n}`;
    // Process CPU and memory, heap, GC and event-loop lag, all under our prefix.
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    this.received = new Counter({ name: name('frames_received_total'), help: 'Frames read from the camera', labelNames: ['camera'], registers });
    this.dropped = new Counter({
      name: name('frames_dropped_total'),
      help: 'Frames replaced by a newer one before inference took them',
      labelNames: ['camera'],
      registers,
    });
    this.inferred = new Counter({ name: name('frames_inferred_total'), help: 'Frames the model ran on', labelNames: ['camera'], registers });
    this.predictions = new Counter({
      name: name('predictions_total'),
      help: 'Top-1 predictions per label (the class mix)',
      labelNames: ['camera', 'label'],
      registers,
    });
    this.errors = new Counter({ name: name('inference_errors_total'), help: 'Frames whose inference failed', labelNames: ['camera'], registers });
    this.latency = new Histogram({
      name: name('inference_latency_seconds'),
      help: 'From a frame arriving from the camera to its inference result',
      labelNames: ['camera'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.frameAge = new Histogram({
      name: name('frame_age_seconds'),
      help: 'How old a frame is when inference starts on it',
      labelNames: ['camera'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.captureDelay = new Histogram({
      name: name('frame_capture_delay_seconds'),
      help: "How late a frame reached the agent by its stream's own clock, above the quickest frame since the stream started",
      labelNames: ['camera'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.lastFrameTime = new Gauge({
      name: name('camera_last_frame_timestamp_seconds'),
      help: 'Unix time of the last frame read from the camera',
      labelNames: ['camera'],
      registers,
    });
    this.events = new Counter({ name: name('events_total'), help: 'Detection events published, by kind', labelNames: ['camera', 'kind'], registers });
    this.snapshotErrors = new Counter({ name: name('snapshot_errors_total'), help: 'Event snapshots that could not be written', registers });

    const up: Gauge<'camera'> = new Gauge({
      name: name('camera_up'),
      help: '1 while the camera delivers frames (online or degraded), else 0',
      labelNames: ['camera'],
      registers,
      collect: () => {
        up.reset();
        for (const c of view.cameraStates()) up.set({ camera: c.cameraId }, c.state === 'online' || c.state === 'degraded' ? 1 : 0);
      },
    });
    const state: Gauge<'camera' | 'state'> = new Gauge({
      name: name('camera_state'),
      help: '1 for the camera\'s current state (starting, online, degraded, offline), 0 for the others',
      labelNames: ['camera', 'state'],
      registers,
      collect: () => {
        state.reset();
        for (const c of view.cameraStates()) for (const s of CAMERA_STATES) state.set({ camera: c.cameraId, state: s }, c.state === s ? 1 : 0);
      },
    });
    const fps: Gauge<'camera'> = new Gauge({
      name: name('camera_frames_per_second'),
      help: 'Frames per second read from the camera over the last seconds',
      labelNames: ['camera'],
      registers,
      collect: () => {
        fps.reset();
        for (const c of view.cameraStates()) fps.set({ camera: c.cameraId }, c.framesPerSecond);
      },
    });
    // Kept by the cameras since the agent started; copied in at each scrape.
    const restarts: Counter<'camera'> = new Counter({
      name: name('camera_restarts_total'),
      help: 'ffmpeg restarts of the camera (it exited, failed or stalled)',
      labelNames: ['camera'],
      registers,
      collect: () => {
        restarts.reset();
        for (const c of view.cameraStates()) restarts.inc({ camera: c.cameraId }, c.restarts);
      },
    });
    const stalls: Counter<'camera'> = new Counter({
      name: name('camera_stalls_total'),
      help: 'Times no frame came from the camera within its stall timeout',
      labelNames: ['camera'],
      registers,
      collect: () => {
        stalls.reset();
        for (const c of view.cameraStates()) stalls.inc({ camera: c.cameraId }, c.stalls ?? 0);
      },
    });
    const model: Gauge<'name' | 'version' | 'sha256'> = new Gauge({
      name: name('model_info'),
      help: 'The active model: 1 with its name, version and sha256 as labels; no series when none is active',
      labelNames: ['name', 'version', 'sha256'],
      registers,
      collect: () => {
        model.reset();
        const m = view.activeModel();
        if (m) model.set({ name: m.name, version: m.version, sha256: m.sha256 }, 1);
      },
    });
    new Gauge({ name: name('info'), help: 'The agent: 1 with its version as a label', labelNames: ['version'], registers }).set({ version: AGENT_VERSION }, 1);
    this.deploymentPhase = new Gauge({ name: name('deployment_phase'), help: 'The phase of the latest deployment: 1 for the phase it is in, 0 for the others', labelNames: ['phase'], registers });
    for (const phase of deploymentPhaseSchema.options) this.deploymentPhase.set({ phase }, phase === 'idle' ? 1 : 0);
    this.deploymentGeneration = new Gauge({ name: name('deployment_generation'), help: 'The desired-state generation the latest deployment phase belongs to', registers });
    this.deploymentTransitions = new Counter({ name: name('deployment_transitions_total'), help: 'Deployment phases entered, by phase', labelNames: ['phase'], registers });
    this.healthWindows = new Counter({
      name: name('health_windows_total'),
      help: 'Health windows after a model switch, by outcome: passed (the model stays) or failed (rolled back)',
      labelNames: ['outcome'],
      registers,
    });
    this.comparedFrames = new Counter({ name: name('shadow_frames_compared_total'), help: 'Sampled frames both the champion and the challenger answered (shadow mode)', labelNames: ['camera'], registers });
    this.agreedFrames = new Counter({ name: name('shadow_frames_agreed_total'), help: 'Compared frames on which champion and challenger gave the same top-1 label', labelNames: ['camera'], registers });
    this.skippedShadowFrames = new Counter({
      name: name('shadow_frames_skipped_total'),
      help: 'Frames sampled for the challenger but skipped because it was still busy (the champion never waits)',
      labelNames: ['camera'],
      registers,
    });
    this.shadowErrorFrames = new Counter({ name: name('shadow_inference_errors_total'), help: 'Sampled frames the challenger failed on', labelNames: ['camera'], registers });
    this.shadowRunTime = new Histogram({
      name: name('shadow_inference_seconds'),
      help: "Each model's run time per frame in its worker, on the frames compared (role: champion or challenger)",
      labelNames: ['role'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const shadowModel = view.shadowModel;
    if (shadowModel) {
      const info: Gauge<'name' | 'version' | 'sha256'> = new Gauge({
        name: name('shadow_model_info'),
        help: 'The challenger in shadow mode: 1 with its name, version and sha256 as labels; no series when none runs',
        labelNames: ['name', 'version', 'sha256'],
        registers,
        collect: () => {
          info.reset();
          const m = shadowModel();
          if (m) info.set({ name: m.name, version: m.version, sha256: m.sha256 }, 1);
        },
      });
      const agreement: Gauge = new Gauge({
        name: name('shadow_agreement_ratio'),
        help: 'Top-1 agreement of champion and challenger over the frames compared since this challenger started; no series before the first',
        registers,
        collect: () => {
          agreement.reset();
          const m = shadowModel();
          const t = this.shadowTally;
          if (m && m.sha256 === t.sha256 && t.compared > 0) agreement.set(t.agreed / t.compared);
        },
      });
    }
    const outboxPending = view.outboxPending;
    if (outboxPending) {
      const pending: Gauge = new Gauge({
        name: name('outbox_pending'),
        help: 'Records waiting in the store-and-forward outbox',
        registers,
        collect: () => pending.set(outboxPending()),
      });
    }
    const decoders = view.decoders;
    if (decoders) {
      const confined: Gauge = new Gauge({
        name: name('decoders_confined'),
        help: 'Whether the ffmpeg decoders are kept off the CPUs left to inference (1) or run anywhere (0)',
        registers,
        collect: () => confined.set(decoders().confined ? 1 : 0),
      });
      const cores: Gauge = new Gauge({
        name: name('decoder_cpu_cores'),
        help: 'CPU cores the ffmpeg decoders used over the last sample (5 s), confined or not',
        registers,
        collect: () => cores.set(decoders().coresUsed),
      });
    }
  }

  /** A new deployment phase (the reported state's); phases restated for the same generation count once. */
  deploymentChanged(d: ReportedState['deployment']): void {
    const prev = this.lastDeployment;
    if (prev && prev.phase === d.phase && prev.generation === d.generation) return;
    this.lastDeployment = { phase: d.phase, generation: d.generation };
    this.deploymentPhase.reset();
    for (const phase of deploymentPhaseSchema.options) this.deploymentPhase.set({ phase }, phase === d.phase ? 1 : 0);
    this.deploymentGeneration.set(d.generation);
    this.deploymentTransitions.inc({ phase: d.phase });
    if (prev?.phase === 'health-check' && prev.generation === d.generation) {
      if (d.phase === 'active') this.healthWindows.inc({ outcome: 'passed' });
      if (d.phase === 'rolled-back') this.healthWindows.inc({ outcome: 'failed' });
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** performance.now() of the camera's last frame, and of its last inference result. */
  lastFrameAt(cameraId: string): number | undefined {
    return this.lastFrame.get(cameraId);
  }

  lastResultAt(cameraId: string): number | undefined {
    return this.lastResult.get(cameraId);
  }

  frameReceived(cameraId: string): void {
    this.lastFrame.set(cameraId, performance.now());
    this.received.inc({ camera: cameraId });
    this.lastFrameTime.set({ camera: cameraId }, Date.now() / 1000);
  }

  frameDropped(cameraId: string): void {
    this.dropped.inc({ camera: cameraId });
  }

  frameDelayed(cameraId: string, delayMs: number): void {
    this.captureDelay.observe({ camera: cameraId }, Math.max(0, delayMs) / 1000);
  }

  inferenceStarted(cameraId: string, frameAgeMs: number): void {
    this.frameAge.observe({ camera: cameraId }, Math.max(0, frameAgeMs) / 1000);
  }

  frameInferred(cameraId: string, label: string, _confidence: number, latencyMs: number): void {
    this.lastResult.set(cameraId, performance.now());
    this.inferred.inc({ camera: cameraId });
    this.predictions.inc({ camera: cameraId, label });
    this.latency.observe({ camera: cameraId }, Math.max(0, latencyMs) / 1000);
  }

  inferenceError(cameraId: string): void {
    this.errors.inc({ camera: cameraId });
  }

  shadowSwitched(model: ModelRef | null): void {
    if (model?.sha256 !== this.shadowTally.sha256) this.shadowTally = { sha256: model?.sha256 ?? '', compared: 0, agreed: 0 };
  }

  shadowCompared(cameraId: string, championLabel: string, challengerLabel: string, championMs: number, challengerMs: number): void {
    const same = championLabel === challengerLabel;
    this.comparedFrames.inc({ camera: cameraId });
    if (same) this.agreedFrames.inc({ camera: cameraId });
    this.shadowTally.compared++;
    if (same) this.shadowTally.agreed++;
    this.shadowRunTime.observe({ role: 'champion' }, Math.max(0, championMs) / 1000);
    this.shadowRunTime.observe({ role: 'challenger' }, Math.max(0, challengerMs) / 1000);
  }

  shadowSkipped(cameraId: string): void {
    this.skippedShadowFrames.inc({ camera: cameraId });
  }

  shadowError(cameraId: string): void {
    this.shadowErrorFrames.inc({ camera: cameraId });
  }

  eventPublished(event: Pick<DetectionEvent, 'cameraId' | 'kind'>): void {
    this.events.inc({ camera: event.cameraId, kind: event.kind });
  }

  snapshotFailed(): void {
    this.snapshotErrors.inc();
  }
}
