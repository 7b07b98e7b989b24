/**
 * A whole Perch site on this machine for the benchmarks that need the real
 * thing: a control plane in this process (embedded broker, SQLite and REST
 * API on 127.0.0.1 ports picked by the OS, data in a temp folder) and agents
 * as separate processes started from the compiled CLI, as on a gateway box.
 * Models are registered and desired through the REST API.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DecoderCpuSetting } from '@perch/agent';
import { ControlPlane, createLogger, loadControlPlaneConfig } from '@perch/control-plane';
import type { ReportedState, TelemetryWindow } from '@perch/shared';
import { AgentProcess } from '../../test/support/agent-process.js';
import { waitUntil } from '../../test/support/wait-until.js';
import type { BenchModel } from './bench-models.js';
import { childPids, commandLine } from './proc-stats.js';

export interface RegisteredModel {
  name: string;
  version: string;
  sha256: string;
}

interface DeviceView {
  status: string;
  reported: ReportedState | null;
}

/**
 * Agent config keys the benchmark sets, written to the agent's YAML as they
 * are (the agent validates them with its own schema); broker, trust, data
 * folder and HTTP port are filled in here.
 */
export interface AgentSetup {
  deviceId: string;
  cameras?: unknown[];
  telemetry?: { windowSeconds: number };
  inference?: Record<string, unknown>;
  ffmpegNice?: number;
  decoderCpus?: DecoderCpuSetting;
  /** default here: a 1 s health window, so swaps are not 60 s apart */
  deployment?: Record<string, unknown>;
  log?: { level: string };
}

export class PerchSite {
  private readonly agents: AgentProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly cp: ControlPlane,
    readonly api: string,
    private readonly rootFile: string,
    private readonly claimTokenFile: string,
  ) {}

  /** `over` adds control plane config, e.g. a larger upload limit. */
  static async start(over: { http?: { maxUploadBytes?: number } } = {}): Promise<PerchSite> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-bench-site-'));
    const config = loadControlPlaneConfig({
      env: {},
      overrides: { dataDir: path.join(dir, 'cp'), mqtt: { host: '127.0.0.1', port: 0 }, http: { ...over.http, host: '127.0.0.1', port: 0 }, log: { level: 'warn' } },
    });
    const cp = new ControlPlane(config, createLogger('warn'));
    try {
      await cp.start();
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
    const rootFile = path.join(dir, 'root.json');
    await writeFile(rootFile, JSON.stringify(await getJson<unknown>(`${api}/trust/root`)));
    const claimTokenFile = path.join(dir, 'claim-token');
    await writeFile(claimTokenFile, cp.claimToken);
    return new PerchSite(dir, cp, api, rootFile, claimTokenFile);
  }

  /** Uploads a model version with its metadata, as an operator would. */
  async register(model: BenchModel, version: string, bytes: Uint8Array): Promise<RegisteredModel> {
    const form = new FormData();
    form.set('version', version);
    form.set('metadata', JSON.stringify(model.metadataInput));
    form.set('file', new Blob([bytes]), path.basename(model.modelPath));
    const res = await this.fetchApi(`/models/${model.name}/versions`, { method: 'POST', body: form });
    if (res.status !== 201) throw new Error(`registering ${model.name} ${version}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { sha256: string };
    return { name: model.name, version, sha256: body.sha256 };
  }

  /** A request to the site's REST API, `route` under /api/v1, with the site's admin token. */
  fetchApi(route: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${this.cp.adminToken}`);
    return fetch(`${this.api}${route}`, { ...init, headers });
  }

  /** Makes `model` (or none) the device's desired model; returns the new generation. */
  async setDesired(deviceId: string, model: RegisteredModel | null): Promise<number> {
    const res = await this.fetchApi(`/devices/${deviceId}/desired-model`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: model ? { name: model.name, version: model.version } : null }),
    });
    if (res.status !== 200) throw new Error(`setting the desired model of ${deviceId}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { generation: number }).generation;
  }

  /** Waits until the device reports `generation` active; a rejection, failure or roll-back, or the agent process dying, fails at once. */
  async waitActive(agent: AgentProcess, generation: number, timeoutMs = 120_000): Promise<void> {
    const settled = await waitUntil(
      async () => {
        if (!agent.running) return 'exited' as const;
        const d = (await getJson<DeviceView>(`${this.api}/devices/${agent.deviceId}`, this.cp.adminToken)).reported?.deployment;
        return d?.generation === generation && ['active', 'rejected', 'failed', 'rolled-back'].includes(d.phase) ? d : null;
      },
      `${agent.deviceId} to report generation ${generation} active`,
      timeoutMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${agent.tail()}`);
    });
    if (settled === 'exited') throw new Error(`the agent process ${agent.deviceId} exited while waiting for generation ${generation}\n${agent.tail()}`);
    if (settled.phase !== 'active') throw new Error(`${agent.deviceId} ${settled.phase} generation ${generation}: ${settled.reason ?? 'no reason given'}`);
  }

  async waitOnline(agent: AgentProcess, timeoutMs = 60_000): Promise<void> {
    const state = await waitUntil(
      async () => {
        if (!agent.running) return 'exited' as const;
        return (await getJson<DeviceView>(`${this.api}/devices/${agent.deviceId}`, this.cp.adminToken).catch(() => null))?.status === 'online' ? ('online' as const) : null;
      },
      `${agent.deviceId} online`,
      timeoutMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${agent.tail()}`);
    });
    if (state === 'exited') throw new Error(`the agent process ${agent.deviceId} exited before coming online\n${agent.tail()}`);
  }

  /** Starts a real agent process connected to this site. */
  async startAgent(setup: AgentSetup): Promise<{ agent: AgentProcess; pid: number }> {
    const configPath = AgentProcess.writeConfig(this.dir, {
      deployment: { healthWindowSeconds: 1 },
      ...setup,
      dataDir: path.join(this.dir, setup.deviceId),
      // The agent claims its own credentials on its first start, as a box in the field does.
      broker: { url: `mqtt://127.0.0.1:${this.cp.mqttPort}`, claimTokenFile: this.claimTokenFile, reconnect: { minMs: 200, maxMs: 2000 } },
      trust: { rootFile: this.rootFile },
      // Port 0: other agents or tests on this machine may hold the default port.
      http: { port: 0 },
    });
    const agent = new AgentProcess(setup.deviceId, configPath);
    agent.start();
    this.agents.push(agent);
    // AgentProcess keeps its child to itself: find it as this process's child running that config.
    const pid = await waitUntil(() => childPids(process.pid).find((p) => commandLine(p).includes(configPath)), `${setup.deviceId} process`, 10_000);
    return { agent, pid };
  }

  /** Telemetry windows of a device stored by the control plane, oldest first. */
  windows(deviceId: string, limit = 1000): TelemetryWindow[] {
    return this.cp.services.telemetry
      .recent(deviceId, limit)
      .map((s) => s.window)
      .sort((a, b) => a.seq - b.seq);
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
    await this.cp.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function getJson<T>(url: string, token?: string): Promise<T> {
  const res = await fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
