import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import { decodeJson, parseDeviceTopic, reportedStateSchema, type ReportedState } from '@perch/shared';
import { AgentProcess } from './agent-process.js';

/** A reported state as the control plane received it, with when. */
export interface ReportedSeen {
  at: number;
  state: ReportedState;
}

export interface RealAgentOptions {
  /** folder for the configs and each agent's data dir */
  dir: string;
  /** the control plane's TUF root (trust.rootFile) */
  rootFile: string;
  /** config merged over the defaults below (telemetry, deployment, cameras, ...) */
  config?: Record<string, unknown>;
}

/**
 * Real agent processes (the compiled CLI: onnxruntime in a worker, ffmpeg
 * cameras, MQTT) joined to one control plane with provisioned credentials,
 * started together. Every reported state the control plane receives from
 * them is kept, in order, beside each agent's own log: what a device was
 * told and did can be read afterwards from both sides.
 */
export class RealAgentFleet {
  private readonly agents = new Map<string, AgentProcess>();
  private readonly seen = new Map<string, ReportedSeen[]>();

  constructor(
    private readonly cp: ControlPlane,
    private readonly opts: RealAgentOptions,
  ) {
    cp.services.bus.onMessage((topic, payload) => {
      const t = parseDeviceTopic(topic);
      if (t?.kind !== 'reported' || !this.agents.has(t.deviceId) || payload.length === 0) return;
      const d = decodeJson(reportedStateSchema, payload);
      if (d.ok) this.seen.get(t.deviceId)?.push({ at: Date.now(), state: d.value });
    });
  }

  get ids(): string[] {
    return [...this.agents.keys()];
  }

  agent(deviceId: string): AgentProcess {
    const a = this.agents.get(deviceId);
    if (!a) throw new Error(`no agent ${deviceId}`);
    return a;
  }

  /** Writes the agent's config: broker, trust, a short health window and telemetry window, one synthetic camera, no local HTTP or events. */
  add(deviceId: string, password: string): void {
    const base: Record<string, unknown> = {
      deviceId,
      dataDir: join(this.opts.dir, deviceId),
      broker: { url: `mqtt://127.0.0.1:${this.cp.mqttPort}`, password, reconnect: { minMs: 200, maxMs: 2000 } },
      trust: { rootFile: this.opts.rootFile },
      telemetry: { windowSeconds: 1 },
      deployment: { healthWindowSeconds: 1 },
      inference: { maxBatch: 1 },
      cameras: [{ id: 'cam', fps: 2, source: { kind: 'synthetic' } }],
      events: { enabled: false },
      http: { enabled: false },
      log: { level: 'info' },
    };
    this.agents.set(deviceId, new AgentProcess(deviceId, AgentProcess.writeConfig(this.opts.dir, { ...base, ...this.opts.config })));
    this.seen.set(deviceId, []);
  }

  /** Starts every agent at once. */
  start(): void {
    for (const a of this.agents.values()) a.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.stop()));
  }

  /** Every reported state of the device the control plane received since `since` (ms). */
  reported(deviceId: string, since = 0): ReportedSeen[] {
    return (this.seen.get(deviceId) ?? []).filter((r) => r.at >= since);
  }

  /** How far each agent's log has got: pass it to `logSince` to read only what came after. */
  logMark(): Map<string, number> {
    return new Map([...this.agents].map(([id, a]) => [id, a.lines.length]));
  }

  /** The agent's log lines (as JSON text) after `mark`. */
  logSince(deviceId: string, mark?: ReadonlyMap<string, number>): string[] {
    return this.agent(deviceId)
      .lines.slice(mark?.get(deviceId) ?? 0)
      .map((l) => JSON.stringify(l));
  }
}

/** Whether a reported state names the model `sha256` anywhere: running, being deployed, or as the challenger. */
export function mentions(state: ReportedState, sha256: string): boolean {
  return state.active?.sha256 === sha256 || state.deployment.target?.sha256 === sha256 || state.shadow?.target.sha256 === sha256;
}
