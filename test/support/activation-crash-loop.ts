import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, type ControlPlane } from '@perch/control-plane';
import type { ReportedState } from '@perch/shared';
import { buildTinyModel } from '../../packages/agent/src/test-support/tiny-model.js';
import { AgentProcess } from './agent-process.js';
import { bearer } from './api-auth.js';
import { startTestControlPlane } from './test-control-plane.js';
import { waitUntil } from './wait-until.js';

const DEVICE = 'crash-agent';
const MODEL = 'crash-tiny';
/** Phases after which the agent does nothing more for a generation until the next one. */
const SETTLED = new Set(['active', 'rolled-back', 'failed', 'rejected']);

/** What the box ran after the restart: the model before the deployment, the new one, or none. */
export type Ending = 'old' | 'new' | 'none';

export interface IterationResult {
  ending: Ending;
  /** the deployment phase the control plane had last seen when the agent was killed ('not started' before the new generation's first) */
  killedIn: string;
  delayMs: number;
  /** the phase reported after the restart, with its reason */
  settledAs: string;
}

/**
 * One control plane and one real agent process (a synthetic camera, a
 * small model of ~150 KB fetched in 1 KiB chunks, a short health window)
 * for killing the agent with SIGKILL at random points of a deployment and
 * checking what it comes back on. Each iteration registers a new version,
 * desires it, kills the agent after a random delay (up to a little more
 * than a whole deployment takes), restarts only the agent, waits for the
 * deployment to settle and then checks that the model the on-disk pointer
 * names hashes to its name, is what the agent reports and is inferring
 * camera frames.
 */
export class ActivationCrashLoop {
  private agent: AgentProcess;
  private generation = 0;
  private readonly versionOf = new Map<string, string>();
  /** how long one deployment takes, from the desire to 'active': the range of the random kill delay */
  private killWindowMs = 0;
  private readonly random: () => number;

  private constructor(
    private readonly dir: string,
    private readonly cp: ControlPlane,
    private readonly api: string,
    private readonly configPath: string,
    seed: number,
  ) {
    this.agent = new AgentProcess(DEVICE, configPath);
    this.random = mulberry32(seed);
  }

  static async start(dir: string, seed: number): Promise<ActivationCrashLoop> {
    const site = await startTestControlPlane(dir);
    const configPath = AgentProcess.writeConfig(dir, {
      deviceId: DEVICE,
      dataDir: join(dir, DEVICE),
      broker: { url: `mqtt://127.0.0.1:${site.cp.mqttPort}`, claimTokenFile: site.claimTokenFile, reconnect: { minMs: 100, maxMs: 500 } },
      trust: { rootFile: site.rootFile },
      cameras: [{ id: 'cam', fps: 10, source: { kind: 'synthetic' } }],
      telemetry: { windowSeconds: 0.3 },
      download: { chunkBytes: 1024, window: 2 },
      // A short window; latency is not what is tested here, and the machine is loaded.
      deployment: { healthWindowSeconds: 0.3, latencyFloorMs: 5000 },
      events: { enabled: false },
      http: { enabled: false },
      log: { level: 'info' },
    });
    const loop = new ActivationCrashLoop(dir, site.cp, site.api, configPath, seed);
    loop.agent.start();
    await loop.deploy(0);
    await loop.settled(0);
    // Timed on a running agent: the kill delays then spread over one whole deployment, and a little past it.
    const started = Date.now();
    await loop.deploy(1);
    await loop.settled(started);
    loop.killWindowMs = Math.max(300, (Date.now() - started) * 1.2);
    return loop;
  }

  async stop(): Promise<void> {
    await this.agent.stop();
    await this.cp.stop();
  }

  /** One deployment, killed at a random instant; throws when the box came back on a model that does not check out. */
  async iteration(i: number): Promise<IterationResult> {
    const old = this.pointer();
    const desiredAt = Date.now();
    const fresh = await this.deploy(i + 2);
    const delayMs = Math.round(this.random() * this.killWindowMs);
    await new Promise((r) => setTimeout(r, Math.max(0, delayMs - (Date.now() - desiredAt))));
    const seen = this.reported()?.deployment;
    const killedIn = seen?.generation === this.generation ? seen.phase : 'not started';
    await this.agent.kill();
    const restartAt = Date.now();
    this.agent = new AgentProcess(DEVICE, this.configPath);
    this.agent.start();
    const settled = await this.settled(restartAt);
    const active = this.pointer();
    await this.verifyRunning(active, settled);
    const ending: Ending = active === null ? 'none' : active === fresh ? 'new' : active === old ? 'old' : 'none';
    return { ending, killedIn, delayMs, settledAs: `${settled.deployment.phase}${settled.deployment.reason ? `: ${settled.deployment.reason}` : ''}` };
  }

  /** Registers a new version (its own bytes) and makes it the device's desired model; returns its sha256. */
  private async deploy(n: number): Promise<string> {
    const model = buildTinyModel({ width: 64, height: 64, gain: 2 + n / 1000 });
    const version = `1.0.${n}`;
    const form = new FormData();
    form.set('version', version);
    form.set('metadata', JSON.stringify(model.metadata));
    form.set('file', new Blob([model.bytes]), 'model.onnx');
    const reg = await fetch(`${this.api}/models/${MODEL}/versions`, { method: 'POST', body: form, headers: bearer(this.cp.adminToken) });
    if (reg.status !== 201) throw new Error(`registering ${version}: ${reg.status} ${await reg.text()}`);
    const sha = ((await reg.json()) as { sha256: string }).sha256;
    this.versionOf.set(sha, version);
    const res = await fetch(`${this.api}/devices/${DEVICE}/desired-model`, {
      method: 'PUT',
      headers: bearer(this.cp.adminToken, { 'content-type': 'application/json' }),
      body: JSON.stringify({ model: { name: MODEL, version } }),
    });
    if (res.status !== 200) throw new Error(`desiring ${version}: ${res.status} ${await res.text()}`);
    this.generation = ((await res.json()) as { generation: number }).generation;
    return sha;
  }

  /** The device's state as the control plane last heard it. */
  private reported(): ReportedState | null {
    return this.cp.services.devices.get(DEVICE)?.reported ?? null;
  }

  /** Waits for the current generation to settle, as reported by the agent started at or after `since`. */
  private async settled(since: number): Promise<ReportedState> {
    return waitUntil(
      () => {
        if (!this.agent.running) throw new Error(`the agent exited\n${this.agent.tail()}`);
        const r = this.reported();
        return r && r.at >= since && r.deployment.generation === this.generation && SETTLED.has(r.deployment.phase) ? r : null;
      },
      `generation ${this.generation} to settle`,
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.agent.tail()}`);
    });
  }

  /** The model the on-disk pointer names (null: none). */
  private pointer(): string | null {
    const file = join(this.dir, DEVICE, 'active.json');
    if (!existsSync(file)) return null;
    return (JSON.parse(readFileSync(file, 'utf8')) as { active: string | null }).active;
  }

  /** The pointer's model is intact on disk, reported as active, and inferring camera frames. */
  private async verifyRunning(sha: string | null, settled: ReportedState): Promise<void> {
    if (sha === null) return;
    const file = join(this.dir, DEVICE, 'models', `${sha}.onnx`);
    const actual = createHash('sha256').update(readFileSync(file)).digest('hex');
    if (actual !== sha) throw new Error(`the active model file ${file} hashes to ${actual}`);
    if (settled.active?.sha256 !== sha) throw new Error(`the pointer names ${sha}, the agent reports ${settled.active?.sha256 ?? 'none'} (${settled.deployment.phase})`);
    const label = `${MODEL}@${this.versionOf.get(sha) ?? '?'}`;
    await waitUntil(
      () => this.agent.find((l) => l.model === label && /^camera cam: [1-9]\d* inferred/.test(l.msg)),
      `frames inferred on ${label}`,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.agent.tail()}`);
    });
  }
}
