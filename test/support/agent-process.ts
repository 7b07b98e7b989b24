import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const AGENT_CLI = fileURLToPath(new URL('../../packages/agent/dist/cli.js', import.meta.url));

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A real agent as a separate process, started from its compiled CLI with a YAML config. */
export class AgentProcess {
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);

  constructor(
    readonly deviceId: string,
    readonly configPath: string,
  ) {}

  static writeConfig(dir: string, config: Record<string, unknown>): string {
    const file = join(dir, `${String(config.deviceId)}.yaml`);
    writeFileSync(file, stringify(config));
    return file;
  }

  start(): void {
    const child = spawn(process.execPath, [AGENT_CLI, '--config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    // The channel only tells the agent when this process is gone; it must not keep this process alive.
    child.channel?.unref();
    this.child = child;
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ level: 30, msg: line });
        }
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => this.stderr.push(s));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.lines.find(pred);
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<number | null> {
    const child = this.child;
    if (!child) return null;
    if (this.running) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await this.exited;
    clearTimeout(timer);
    this.child = null;
    return code;
  }

  /** SIGKILL: no handler runs, as in a crash or an OOM kill. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (this.running) child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }

  /** The tail of the agent's log, for failure messages. */
  tail(n = 30): string {
    return [...this.lines.slice(-n).map((l) => JSON.stringify(l)), ...this.stderr.slice(-5)].join('\n');
  }
}
