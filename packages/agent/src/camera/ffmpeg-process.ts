import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { DecoderPlacement } from './decoder-cpus.js';
import { formatCpuList } from './cpu-list.js';
import { FrameAssembler } from './frame-assembler.js';
import { isNoise, tidyStderrLine } from './stderr-classifier.js';
import { parseShowinfo, StreamClock } from './stream-clock.js';

export interface FfmpegProcessOptions {
  ffmpegPath: string;
  argv: string[];
  /** what ffmpeg prints as the input's name: its fatal line starts with it */
  input: string;
  frameBytes: number;
  /** masks secrets in every stderr line kept */
  redact: (text: string) => string;
  /** niceness to run ffmpeg at; unset leaves it at the agent's */
  nice?: number;
  /** the CPUs to run ffmpeg on (through taskset, which execs it: same process); unset: anywhere */
  placement?: DecoderPlacement | null;
}

/** Why the agent ended this run, when it did. */
export type KillReason = 'stop' | 'stall' | 'fatal';

export interface FfmpegExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** set when the process could not be started at all */
  spawnError?: string;
  killedFor?: KillReason;
  /** the last stderr lines (tidied, redacted, without noise) */
  stderr: string[];
}

const STDERR_LINES = 20;
/** SIGTERM lets ffmpeg send RTSP TEARDOWN (cameras have few sessions); a hung one gets SIGKILL after this. */
const KILL_GRACE_MS = 2000;
/**
 * After ffmpeg's fatal line about its input it has given up, but it may take
 * long to go: 5.1 on a frozen RTSP server sends TEARDOWN and waits its socket
 * timeout twice more. It gets this long to exit by itself.
 */
const FATAL_GRACE_MS = 1500;

type ProcessEvents = {
  /** `arrivedAt`: performance.now() when its last byte was read */
  frame: [frame: Uint8Array, arrivedAt: number];
  /** how late a frame arrived by the stream's clock, when ffmpeg logs frame timestamps (see StreamClock) */
  'frame-delay': [delayMs: number];
};

/**
 * One ffmpeg process: frames cut from its stdout, the tail of its stderr
 * kept, and an `exited` promise that always settles, whether ffmpeg ended,
 * crashed, could not start or was killed.
 */
export class FfmpegProcess extends EventEmitter<ProcessEvents> {
  readonly exited: Promise<FfmpegExit>;
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private partial = '';
  private killedFor: KillReason | undefined;
  private killTimer: NodeJS.Timeout | null = null;
  private fatalTimer: NodeJS.Timeout | null = null;
  private done = false;
  private readonly clock = new StreamClock((ms) => this.emit('frame-delay', ms));

  constructor(private readonly opts: FfmpegProcessOptions) {
    super();
    let frameNumber = 0;
    const assembler = new FrameAssembler(opts.frameBytes, (frame) => {
      const at = performance.now();
      this.clock.frameArrived(frameNumber++, at);
      this.emit('frame', frame, at);
    });
    const placed = opts.placement;
    this.child = placed
      ? spawn(placed.taskset, ['-c', formatCpuList(placed.cpus), opts.ffmpegPath, ...opts.argv], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(opts.ffmpegPath, opts.argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (opts.nice !== undefined && this.child.pid !== undefined) {
      try {
        setPriority(this.child.pid, opts.nice);
      } catch {
        // Gone already, or not allowed here: it runs at the agent's priority, which is only slower for inference.
      }
    }
    this.child.stdout?.on('data', (chunk: Buffer) => assembler.push(chunk));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (text: string) => this.onStderr(text));
    this.exited = new Promise<FfmpegExit>((resolve) => {
      const finish = (exit: Omit<FfmpegExit, 'stderr' | 'killedFor'>) => {
        if (this.done) return;
        this.done = true;
        if (this.killTimer) clearTimeout(this.killTimer);
        if (this.fatalTimer) clearTimeout(this.fatalTimer);
        if (this.partial !== '') this.keep(this.partial);
        resolve({ ...exit, ...(this.killedFor ? { killedFor: this.killedFor } : {}), stderr: [...this.lines] });
      };
      this.child.on('error', (err) => finish({ code: null, signal: null, spawnError: `cannot run ffmpeg at ${opts.ffmpegPath}${placed ? ` through ${placed.taskset}` : ''}: ${err.message}` }));
      // 'close' comes after stdout and stderr are drained: no frame or line is lost.
      this.child.on('close', (code, signal) => finish({ code, signal }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Ends the run: SIGTERM, then SIGKILL if ffmpeg does not go. The first reason given is kept. */
  kill(reason: KillReason): void {
    if (this.done) return;
    this.killedFor ??= reason;
    this.child.kill('SIGTERM');
    this.killTimer ??= setTimeout(() => this.child.kill('SIGKILL'), KILL_GRACE_MS);
  }

  private onStderr(text: string): void {
    const parts = (this.partial + text).split(/\r?\n|\r/);
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.keep(line);
  }

  private keep(raw: string): void {
    // Information (stream details, showinfo's frame lines) is never a cause: only frame timestamps are read from it.
    if (raw.includes('[info] ')) {
      const t = parseShowinfo(raw);
      if (t) this.clock.frameTime(t.n, t.seconds);
      return;
    }
    if (raw.trim() === '' || isNoise(raw)) return;
    // ffmpeg's own "<input>: <error>" ends its use of that input: it is about to exit.
    if (this.fatalTimer === null && (raw.startsWith(`[error] ${this.opts.input}: `) || raw.startsWith(`[fatal] ${this.opts.input}: `))) {
      this.fatalTimer = setTimeout(() => this.kill('fatal'), FATAL_GRACE_MS);
    }
    this.lines.push(this.opts.redact(tidyStderrLine(raw)));
    if (this.lines.length > STDERR_LINES) this.lines.shift();
  }
}
