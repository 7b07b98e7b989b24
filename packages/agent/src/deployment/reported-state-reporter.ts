import { encodeJson, reportedStateSchema, type CameraState, type ModelRef, type ReportedState, type ShadowStatus } from '@perch/shared';
import { AGENT_VERSION } from '../agent-version.js';
import type { Logger } from '../log/logger.js';
import type { MqttConnection } from '../mqtt/connection.js';

export type DeploymentStatus = ReportedState['deployment'];

const PROGRESS_INTERVAL_MS = 500;

/**
 * Publishes the device's actual state, retained at QoS 1: on every change of
 * deployment phase, on connect, and for download progress at most every
 * ~500 ms. While the link is down nothing is queued: the state is published
 * whole on the next connect, so stale intermediate states never pile up.
 */
export class ReportedStateReporter {
  private acceptedGeneration = 0;
  private active: ModelRef | null = null;
  private deployment: DeploymentStatus = { phase: 'idle', generation: 0, target: null, at: Date.now() };
  private shadow: ShadowStatus | null = null;
  private lastPublish = 0;
  private trailing: NodeJS.Timeout | null = null;
  private readonly onConnect = () => this.publishNow();
  private last: ReportedState | null = null;
  private readonly listeners: ((d: DeploymentStatus) => void)[] = [];

  constructor(
    private readonly connection: MqttConnection,
    private readonly cameras: () => CameraState[],
    private readonly log: Logger,
  ) {}

  start(): void {
    this.connection.on('connect', this.onConnect);
    if (this.connection.connected) this.publishNow();
  }

  stop(): void {
    this.connection.off('connect', this.onConnect);
    if (this.trailing) clearTimeout(this.trailing);
    this.trailing = null;
  }

  /** The state as last built; for tests and the log. */
  get current(): ReportedState | null {
    return this.last;
  }

  get phase(): DeploymentStatus['phase'] {
    return this.deployment.phase;
  }

  setAccepted(acceptedGeneration: number, active: ModelRef | null): void {
    this.acceptedGeneration = acceptedGeneration;
    this.active = active;
  }

  /** Called with every new phase (not with download progress), e.g. for metrics. */
  onDeployment(listener: (d: DeploymentStatus) => void): void {
    this.listeners.push(listener);
  }

  /** A new phase (or reason) is published at once. */
  setDeployment(d: Omit<DeploymentStatus, 'at'>): void {
    const reason = d.reason === undefined ? {} : { reason: d.reason.slice(0, 2000) };
    this.deployment = { ...d, ...reason, at: Date.now() };
    for (const l of this.listeners) l(this.deployment);
    this.publishNow();
  }

  /** The challenger's state (shadow mode), or none; published at once. */
  setShadow(s: Omit<ShadowStatus, 'at'> | null): void {
    this.shadow = s === null ? null : { ...s, ...(s.reason === undefined ? {} : { reason: s.reason.slice(0, 2000) }), at: Date.now() };
    this.publishNow();
  }

  get shadowStatus(): ShadowStatus | null {
    return this.shadow;
  }

  /**
   * Download progress, coalesced to one publish per ~500 ms. It restates the
   * downloading phase, so a refusal of some other document in the meantime
   * does not hide the download still under way.
   */
  setProgress(generation: number, target: ModelRef, bytes: number, total: number): void {
    this.deployment = { phase: 'downloading', generation, target, progress: { bytes, total }, at: Date.now() };
    const wait = this.lastPublish + PROGRESS_INTERVAL_MS - Date.now();
    if (wait <= 0 || bytes === total) this.publishNow();
    else if (!this.trailing) this.trailing = setTimeout(() => this.publishNow(), wait);
  }

  /** Something outside the deployment changed (a camera went offline): publish soon, coalesced. */
  changed(): void {
    if (!this.trailing) this.trailing = setTimeout(() => this.publishNow(), Math.max(0, this.lastPublish + PROGRESS_INTERVAL_MS - Date.now()));
  }

  publishNow(): void {
    if (this.trailing) clearTimeout(this.trailing);
    this.trailing = null;
    const state: ReportedState = {
      deviceId: this.connection.deviceId,
      agentVersion: AGENT_VERSION,
      at: Date.now(),
      acceptedGeneration: this.acceptedGeneration,
      active: this.active,
      deployment: this.deployment,
      cameras: this.cameras(),
      ...(this.shadow ? { shadow: this.shadow } : {}),
    };
    const parsed = reportedStateSchema.safeParse(state);
    if (!parsed.success) {
      this.log.error({ issues: parsed.error.issues }, 'reported state does not match the contract; not published');
      return;
    }
    this.last = parsed.data;
    this.lastPublish = Date.now();
    if (!this.connection.connected) return;
    this.connection
      .publish('reported', encodeJson(parsed.data), { qos: 1, retain: true })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'reported state not published'));
  }
}
