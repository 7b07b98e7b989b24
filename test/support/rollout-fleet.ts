import {
  decodeJson,
  deviceTopic,
  emptyHistogram,
  LATENCY_SPEC,
  modelRefOf,
  observe,
  signedDesiredStateSchema,
  telemetryWindowSchema,
  type DeploymentPhase,
  type ModelRef,
  type ReportedState,
  type ShadowStatus,
  type TelemetryWindow,
} from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';

/**
 * A simulated fleet for rollout tests: real mqtt.js devices with their own
 * credentials that speak the device side of the contract (desired state in,
 * reported state and telemetry windows out) and behave per model: what a
 * model does on a device (deploys or fails, what it predicts, how long it
 * takes) is looked up by its sha256, so a bad model looks bad in the
 * telemetry the control plane's gates read. Each device keeps every desired
 * state it was sent, and when it switched models.
 */
export interface ModelBehaviour {
  /** what the device reports when told to run it */
  deploy: Extract<DeploymentPhase, 'active' | 'failed' | 'rejected' | 'rolled-back'>;
  /** top-1 labels of one window's frames, in frame order (the same every window) */
  labels: readonly string[];
  /** inference time per frame */
  latencyMs: number;
  /** failed inferences per window */
  errors?: number;
}

export interface DesiredSeen {
  at: number;
  generation: number;
  active: string | null;
  shadow: string | null;
  rollback: boolean;
}

export interface Switch {
  at: number;
  from: string | null;
  to: string | null;
}

interface Challenger {
  ref: ModelRef;
  sampleRate: number;
  status: ShadowStatus;
}

class RolloutBox {
  client: MqttClient | null = null;
  seq = 0;
  active: ModelRef | null = null;
  acceptedGeneration = 0;
  handled = 0;
  deployment: ReportedState['deployment'] = { phase: 'idle', generation: 0, target: null, at: Date.now() };
  challenger: Challenger | null = null;
  readonly desired: DesiredSeen[] = [];
  readonly switches: Switch[] = [];
  /** when it first sent a window of each model, by sha256 */
  readonly firstWindowAt = new Map<string, number>();

  constructor(
    readonly deviceId: string,
    readonly password: string,
  ) {}

  get connected(): boolean {
    return this.client?.connected === true;
  }
}

export class RolloutFleet {
  private readonly boxes = new Map<string, RolloutBox>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private url: string,
    private readonly behaviours: ReadonlyMap<string, ModelBehaviour>,
    private readonly fallback: ModelBehaviour,
  ) {}

  add(deviceId: string, password: string): void {
    this.boxes.set(deviceId, new RolloutBox(deviceId, password));
  }

  get ids(): string[] {
    return [...this.boxes.keys()];
  }

  box(deviceId: string): RolloutBox {
    const b = this.boxes.get(deviceId);
    if (!b) throw new Error(`no simulated device ${deviceId}`);
    return b;
  }

  /** Connects these devices (all by default); resolves once each is connected. */
  async connect(ids = this.ids): Promise<void> {
    await Promise.all(ids.map((id) => this.connectOne(this.box(id))));
  }

  /** Cuts these devices off as a power cut would: the broker publishes their will. */
  async cut(ids: readonly string[]): Promise<void> {
    await Promise.all(
      ids.map(async (id) => {
        const b = this.box(id);
        const c = b.client;
        b.client = null;
        await c?.endAsync(true);
      }),
    );
  }

  /** A window from every connected device every `intervalMs`. */
  startTelemetry(intervalMs: number): void {
    this.timer = setInterval(() => {
      for (const b of this.boxes.values()) if (b.connected) this.sendWindow(b);
    }, intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.cut(this.ids.filter((id) => this.box(id).client));
  }

  private behaviour(sha: string): ModelBehaviour {
    return this.behaviours.get(sha) ?? this.fallback;
  }

  private connectOne(b: RolloutBox): Promise<void> {
    const client = mqtt.connect(this.url, {
      clientId: b.deviceId,
      username: b.deviceId,
      password: b.password,
      clean: true,
      reconnectPeriod: 200,
      connectTimeout: 5000,
      will: { topic: deviceTopic(b.deviceId, 'status'), payload: Buffer.from(this.status(b.deviceId, 'offline')), qos: 1, retain: true },
    });
    b.client = client;
    client.on('connect', () => {
      client.publish(deviceTopic(b.deviceId, 'status'), this.status(b.deviceId, 'online'), { qos: 1, retain: true });
      client.subscribe(deviceTopic(b.deviceId, 'desired'), { qos: 1 });
      this.report(b);
    });
    client.on('message', (_topic, payload) => this.onDesired(b, payload));
    client.on('error', () => undefined);
    return new Promise((resolve) => client.once('connect', () => resolve()));
  }

  private onDesired(b: RolloutBox, payload: Buffer): void {
    if (payload.length === 0) return;
    const decoded = decodeJson(signedDesiredStateSchema, payload);
    if (!decoded.ok || decoded.value.signed.deviceId !== b.deviceId) return;
    const d = decoded.value.signed;
    // The retained copy again after a reconnect: handled already.
    if (d.generation <= b.handled) return;
    b.handled = d.generation;
    const now = Date.now();
    b.desired.push({ at: now, generation: d.generation, active: d.active?.hashes.sha256 ?? null, shadow: d.shadow?.hashes.sha256 ?? null, rollback: d.rollback === true });

    const target = d.active ? modelRefOf(d.active) : null;
    const outcome = target ? this.behaviour(target.sha256).deploy : 'active';
    if (outcome === 'active') {
      if ((b.active?.sha256 ?? null) !== (target?.sha256 ?? null)) b.switches.push({ at: now, from: b.active?.sha256 ?? null, to: target?.sha256 ?? null });
      b.active = target;
      b.acceptedGeneration = d.generation;
      b.deployment = { phase: target ? 'active' : 'idle', generation: d.generation, target, at: now };
    } else {
      if (outcome !== 'rejected') b.acceptedGeneration = d.generation;
      b.deployment = { phase: outcome, generation: d.generation, target, reason: `simulated: the model ${outcome === 'rolled-back' ? 'failed its health window' : 'could not be deployed'}`, at: now };
    }

    const shadow = d.shadow ? modelRefOf(d.shadow) : null;
    if (shadow && b.active) {
      const sampleRate = d.shadowSampleRate ?? 0.25;
      const ok = this.behaviour(shadow.sha256).deploy === 'active';
      b.challenger = {
        ref: shadow,
        sampleRate,
        status: { generation: d.generation, target: shadow, phase: ok ? 'running' : 'rejected', sampleRate, at: now, ...(ok ? {} : { reason: 'simulated: the challenger could not be loaded' }) },
      };
    } else {
      b.challenger = null;
    }
    this.report(b);
  }

  private report(b: RolloutBox): void {
    if (!b.client) return;
    const state: ReportedState = {
      deviceId: b.deviceId,
      agentVersion: 'rollout-sim',
      at: Date.now(),
      acceptedGeneration: b.acceptedGeneration,
      active: b.active,
      deployment: b.deployment,
      cameras: [{ cameraId: 'cam-0', state: 'online', framesPerSecond: 10, restarts: 0 }],
      ...(b.challenger ? { shadow: b.challenger.status } : {}),
    };
    b.client.publish(deviceTopic(b.deviceId, 'reported'), JSON.stringify(state), { qos: 1, retain: true });
  }

  private sendWindow(b: RolloutBox): void {
    if (!b.client) return;
    const end = Date.now();
    const w: TelemetryWindow = { deviceId: b.deviceId, seq: b.seq++, windowStart: end - 1000, windowEnd: end, model: b.active, cameras: [] };
    if (b.active) {
      const m = this.behaviour(b.active.sha256);
      const latencyMs = emptyHistogram(LATENCY_SPEC);
      const classCounts: Record<string, number> = {};
      m.labels.forEach((label, i) => {
        classCounts[label] = (classCounts[label] ?? 0) + 1;
        // A little spread, the same every window.
        observe(latencyMs, m.latencyMs * (0.9 + 0.2 * ((i * 7) % 10) / 10));
      });
      w.cameras.push({
        cameraId: 'cam-0',
        framesReceived: m.labels.length,
        framesInferred: m.labels.length,
        framesDropped: 0,
        inferenceErrors: m.errors ?? 0,
        classCounts,
        confidence: emptyHistogram('confidence.v1'),
        latencyMs,
      });
      if (!b.firstWindowAt.has(b.active.sha256)) b.firstWindowAt.set(b.active.sha256, end);
      if (b.challenger?.status.phase === 'running') w.shadow = this.shadowWindow(m, b.challenger);
    }
    b.client.publish(deviceTopic(b.deviceId, 'telemetry'), JSON.stringify(telemetryWindowSchema.parse(w)), { qos: 1 });
  }

  /** Champion against challenger on every k-th frame: the pairs of their labels at the same frames. */
  private shadowWindow(champion: ModelBehaviour, c: Challenger): NonNullable<TelemetryWindow['shadow']> {
    const challenger = this.behaviour(c.ref.sha256);
    const every = Math.max(1, Math.round(1 / c.sampleRate));
    const pairs = new Map<string, { champion: string; challenger: string; count: number }>();
    const championMs = emptyHistogram(LATENCY_SPEC);
    const challengerMs = emptyHistogram(LATENCY_SPEC);
    let compared = 0;
    let agreed = 0;
    for (let i = 0; i < champion.labels.length; i += every) {
      const a = champion.labels[i] as string;
      const b = challenger.labels[i % challenger.labels.length] as string;
      compared++;
      if (a === b) agreed++;
      const key = `${a}\u0000${b}`;
      const p = pairs.get(key) ?? { champion: a, challenger: b, count: 0 };
      p.count++;
      pairs.set(key, p);
      observe(championMs, champion.latencyMs);
      observe(challengerMs, challenger.latencyMs);
    }
    return {
      model: c.ref,
      sampleRate: c.sampleRate,
      framesCompared: compared,
      agreed,
      skippedBusy: 0,
      errors: 0,
      confusion: [...pairs.values()].sort((x, y) => y.count - x.count),
      confusionOverflow: 0,
      championInferenceMs: championMs,
      challengerInferenceMs: challengerMs,
      cameras: [{ cameraId: 'cam-0', framesCompared: compared, agreed }],
    };
  }

  private status(deviceId: string, state: 'online' | 'offline'): string {
    return JSON.stringify({ deviceId, state, agentVersion: 'rollout-sim', since: Date.now() });
  }
}
