/**
 * The benchmark's side of simulated fleets run in child processes
 * (fleet-simulator-process.ts): spawns them with a slice of the devices
 * each, sends commands, and sums what they report. Device i goes to
 * process i mod P, so starting the first n devices starts about n / P in
 * every process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { FleetStats, SimulatedDevice } from './fleet-simulator.js';
import type { FleetCommand, FleetProcessSpec } from './fleet-spec.js';

const SCRIPT = fileURLToPath(new URL('./fleet-simulator-process.ts', import.meta.url));

export type ProcessStats = FleetStats & { at: number; pid: number; rssBytes: number };

type Reply = Record<string, unknown>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** One simulator process. */
export class SimulatorProcess {
  latest: ProcessStats | null = null;
  private readonly pendingReplies = new Map<number, (reply: Reply) => void>();
  private nextId = 1;
  private stderr = '';
  private exitCode: number | null = null;
  private readonly ready: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    let markReady: () => void = () => undefined;
    let fail: (err: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      fail = reject;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-4000)));
    child.on('exit', (code) => {
      this.exitCode = code ?? -1;
      fail(new Error(`fleet simulator process exited ${code} before it was ready: ${this.stderr}`));
      for (const [, resolve] of this.pendingReplies) resolve({ error: `exited ${code}` });
      this.pendingReplies.clear();
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      let msg: Reply;
      try {
        msg = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      if (msg['type'] === 'ready') markReady();
      else if (msg['type'] === 'stats') this.latest = msg as unknown as ProcessStats;
      else if (msg['type'] === 'reply') {
        const id = msg['id'] as number;
        this.pendingReplies.get(id)?.(msg);
        this.pendingReplies.delete(id);
      }
    });
  }

  /** Starts a process with its spec written to `specFile`. */
  static async spawn(spec: FleetProcessSpec, specFile: string): Promise<SimulatorProcess> {
    writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
    const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, specFile], { stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new SimulatorProcess(child);
    await p.ready;
    return p;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitCode === null;
  }

  tail(): string {
    return this.stderr;
  }

  request(command: DistributiveOmit<FleetCommand, 'id'>): Promise<Reply> {
    if (!this.running) return Promise.reject(new Error(`fleet simulator process ${this.pid} has exited: ${this.stderr}`));
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pendingReplies.set(id, resolve);
      this.child.stdin?.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  }

  async stats(): Promise<ProcessStats> {
    const r = await this.request({ cmd: 'stats' });
    if (!r['stats']) throw new Error(`fleet simulator process ${this.pid}: ${String(r['error'])} ${this.stderr}`);
    this.latest = r['stats'] as ProcessStats;
    return this.latest;
  }

  async close(graceful = false): Promise<void> {
    if (!this.running) return;
    await this.request({ cmd: 'stop', graceful });
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin?.end();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (this.running) this.child.kill('SIGKILL');
  }
}

/** Sums the numeric fields of process stats; lag and RSS are also given per process. */
export function sumStats(all: readonly ProcessStats[]): FleetStats & { rssBytes: number[]; schedulerLagMaxMs: number } {
  const out: Record<string, number> = {};
  const errorKinds: Record<string, number> = {};
  for (const s of all) {
    for (const [k, v] of Object.entries(s)) {
      if (typeof v !== 'number' || k === 'at' || k === 'pid' || k === 'rssBytes') continue;
      out[k] = k === 'schedulerLagMaxMs' ? Math.max(out[k] ?? 0, v) : (out[k] ?? 0) + v;
    }
    for (const [k, v] of Object.entries(s.errorKinds ?? {})) errorKinds[k] = (errorKinds[k] ?? 0) + v;
  }
  return { ...(out as unknown as FleetStats), errorKinds, rssBytes: all.map((s) => s.rssBytes) };
}

export interface FleetProcessesOptions extends Omit<FleetProcessSpec, 'devices'> {
  devices: readonly SimulatedDevice[];
  processes: number;
  /** a folder for the spec files */
  dir: string;
  label: string;
}

/** A fleet spread over several simulator processes. */
export class SimulatedFleet {
  private constructor(
    readonly processes: SimulatorProcess[],
    readonly size: number,
  ) {}

  static async spawn(opts: FleetProcessesOptions): Promise<SimulatedFleet> {
    const { devices, processes: n, dir, label, ...common } = opts;
    const slices = Array.from({ length: n }, (_, k) => devices.filter((_, i) => i % n === k));
    const procs = await Promise.all(
      slices.map((slice, k) => SimulatorProcess.spawn({ ...common, devices: slice, seed: (common.seed ?? 1) + k }, path.join(dir, `${label}-${k}.json`))),
    );
    return new SimulatedFleet(procs, devices.length);
  }

  /** Powers devices on until the first `count` of the fleet are started. */
  async start(count: number): Promise<void> {
    const n = this.processes.length;
    await Promise.all(this.processes.map((p, k) => p.request({ cmd: 'start', count: Math.max(0, Math.ceil((Math.min(count, this.size) - k) / n)) })));
  }

  async setTelemetry(load: FleetProcessSpec['telemetry']): Promise<void> {
    await Promise.all(this.processes.map((p) => p.request({ cmd: 'telemetry', load: load ?? null })));
  }

  async stats(): Promise<ReturnType<typeof sumStats>> {
    return sumStats(await Promise.all(this.processes.map((p) => p.stats())));
  }

  /** Per device: id, first seq, next seq, windows acknowledged. */
  async progress(): Promise<[string, number, number, number][]> {
    const replies = await Promise.all(this.processes.map((p) => p.request({ cmd: 'progress' })));
    return replies.flatMap((r) => (r['progress'] ?? []) as [string, number, number, number][]);
  }

  /** Polls until `check` passes on the summed stats; the timeout says what was waited for. */
  async until(check: (s: ReturnType<typeof sumStats>) => boolean, what: string, timeoutMs: number, everyMs = 250): Promise<ReturnType<typeof sumStats>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.stats();
      if (check(s)) return s;
      const dead = this.processes.find((p) => !p.running);
      if (dead) throw new Error(`a fleet simulator process exited while waiting for ${what}: ${dead.tail()}`);
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  async close(graceful = false): Promise<void> {
    await Promise.all(this.processes.map((p) => p.close(graceful)));
  }
}
