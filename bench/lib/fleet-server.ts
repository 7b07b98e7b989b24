/**
 * The benchmark's handle on a fleet server process (fleet-server-process.ts):
 * a control plane or a bare aedes broker in a child process of its own, its
 * log in a file, driven over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ControlPlaneConfigInput } from '@perch/control-plane';
import type { AuditResult } from './fleet-audit.js';
import type { ServerCommand, ServerMode, ServerStats } from './fleet-server-process.js';
import { unitEnvironment } from './unit-environment.js';

const SCRIPT = fileURLToPath(new URL('./fleet-server-process.ts', import.meta.url));

export interface FleetServerStart {
  mode: ServerMode;
  dataDir: string;
  /** 0: one the OS picks; a restart passes the port it had */
  port?: number;
  config?: ControlPlaneConfigInput;
  logLevel?: string;
  /** the bare aedes baseline with retained messages indexed by topic (control-plane/src/broker/indexed-retained-persistence.ts), as the control plane runs it */
  retainedIndex?: boolean;
  /** the process's stdout and stderr (the control plane's log) */
  logFile: string;
}

export class FleetServer {
  private readonly replies = new Map<number, (msg: Record<string, unknown>) => void>();
  private nextId = 1;
  private exit: { code: number | null; signal: string | null } | null = null;
  mqttPort = 0;
  httpPort = 0;
  claimToken = '';
  adminToken = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly opts: FleetServerStart,
  ) {
    child.on('message', (msg: Record<string, unknown>) => {
      const id = msg['id'] as number;
      this.replies.get(id)?.(msg);
      this.replies.delete(id);
    });
    child.on('exit', (code, signal) => {
      this.exit = { code, signal };
      for (const [, resolve] of this.replies) resolve({ ok: false, error: `server process exited (${code ?? signal})` });
      this.replies.clear();
    });
  }

  static async start(opts: FleetServerStart): Promise<FleetServer> {
    const fd = openSync(opts.logFile, 'a');
    let child: ChildProcess;
    try {
      // PERCH_BENCH_FLEET_SERVER_NODE_ARGS: extra node flags for the server processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
      const extra = process.env['PERCH_BENCH_FLEET_SERVER_NODE_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
      // Both servers run with the environment the control plane's systemd unit sets (MALLOC_ARENA_MAX).
      child = fork(SCRIPT, [], { execArgv: ['--import', 'tsx', ...extra], env: { ...process.env, ...unitEnvironment('perch-control-plane.service') }, stdio: ['ignore', fd, fd, 'ipc'] });
    } finally {
      closeSync(fd);
    }
    const server = new FleetServer(child, opts);
    const r = await server.call({ cmd: 'start', mode: opts.mode, dataDir: opts.dataDir, port: opts.port ?? 0, ...(opts.config ? { config: opts.config } : {}), ...(opts.logLevel ? { logLevel: opts.logLevel } : {}), ...(opts.retainedIndex ? { retainedIndex: true } : {}) });
    server.mqttPort = r['mqttPort'] as number;
    server.httpPort = (r['httpPort'] as number | undefined) ?? 0;
    server.claimToken = (r['claimToken'] as string | undefined) ?? '';
    server.adminToken = (r['adminToken'] as string | undefined) ?? '';
    return server;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Whether the process still runs; `exited` says how it ended. */
  get running(): boolean {
    return this.exit === null;
  }

  get exited(): { code: number | null; signal: string | null } | null {
    return this.exit;
  }

  logTail(chars = 3000): string {
    try {
      return readFileSync(this.opts.logFile, 'utf8').slice(-chars);
    } catch {
      return '';
    }
  }

  async call(command: ServerCommand): Promise<Record<string, unknown>> {
    if (!this.running) throw new Error(`fleet server process has exited (${JSON.stringify(this.exit)}):\n${this.logTail()}`);
    const id = this.nextId++;
    const reply = await new Promise<Record<string, unknown>>((resolve) => {
      this.replies.set(id, resolve);
      this.child.send({ ...command, id });
    });
    if (reply['ok'] !== true) throw new Error(`fleet server ${command.cmd}: ${String(reply['error'])}\n${this.logTail()}`);
    return reply;
  }

  async provision(ids: string[]): Promise<string[]> {
    return (await this.call({ cmd: 'provision', ids }))['passwords'] as string[];
  }

  async stats(): Promise<ServerStats> {
    return (await this.call({ cmd: 'stats' }))['stats'] as ServerStats;
  }

  async resetLatency(): Promise<void> {
    await this.call({ cmd: 'reset-latency' });
  }

  /** Row counts and the stored keys of `deviceIds`; `validate` checks every stored payload against its schema. */
  async audit(deviceIds: string[], validate = true): Promise<AuditResult> {
    return (await this.call({ cmd: 'audit', deviceIds, validate }))['audit'] as AuditResult;
  }

  /**
   * Stops the server the way a service stop does and waits for the process
   * to end: how long the stop took (ms), and the error when the process
   * failed instead (a crash while stopping is a finding, reported, not thrown).
   */
  async stop(): Promise<{ ms: number; error: string | null }> {
    if (!this.running) return { ms: 0, error: null };
    const t0 = performance.now();
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    let error: string | null = null;
    try {
      await this.call({ cmd: 'stop' });
    } catch {
      // The line that says why, from the end of the process's output.
      const lines = this.logTail(20_000).split('\n');
      const why = lines.filter((l) => /^\w*(Error|Exception)\b|^\w+Error:/.test(l.trim())).at(-1);
      error = `the process exited ${JSON.stringify(this.exit)}${why ? `: ${why.trim()}` : ''}`;
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
    if (this.running) this.child.kill('SIGKILL');
    return { ms: performance.now() - t0, error };
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}
