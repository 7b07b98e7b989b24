import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import ffmpeg from 'fluent-ffmpeg';
import type { CameraState } from '@perch/shared';
import { JitteredBackoff } from '../backoff/jittered-backoff.js';
import type { CameraConfig } from '../config/agent-config.js';
import type { Logger } from '../log/logger.js';
import { ffmpegArgs } from './ffmpeg-args.js';
import { FrameAssembler } from './frame-assembler.js';

export interface FfmpegCameraOptions {
  ffmpegPath: string;
  /** the active model's input size: ffmpeg scales to it */
  width: number;
  height: number;
  restart?: { minMs: number; maxMs: number };
}

type CameraEvents = {
  frame: [frame: Uint8Array, arrivedAt: number];
  /** state (starting/online/offline) changed */
  state: [state: CameraState];
};

const STDERR_LINES = 20;
const FPS_WINDOW_MS = 5000;

/**
 * One camera read through ffmpeg as rgb24 frames of the model's size.
 * When ffmpeg exits (dead camera, broken file) it is restarted with backoff,
 * and the last lines of its stderr become the camera's `lastError`.
 */
export class FfmpegCamera extends EventEmitter<CameraEvents> {
  private command: ffmpeg.FfmpegCommand | null = null;
  private running = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly backoff: JitteredBackoff;
  private readonly stderr: string[] = [];
  private readonly arrivals: number[] = [];
  private status: CameraState['state'] = 'offline';
  private restarts = 0;
  private lastError: string | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly config: CameraConfig,
    private readonly opts: FfmpegCameraOptions,
    private readonly log: Logger,
  ) {
    super();
    this.backoff = new JitteredBackoff(opts.restart?.minMs ?? 1000, opts.restart?.maxMs ?? 30_000);
  }

  get id(): string {
    return this.config.id;
  }

  get size(): { width: number; height: number } {
    return { width: this.opts.width, height: this.opts.height };
  }

  state(): CameraState {
    const now = performance.now();
    while (this.arrivals.length > 0 && (this.arrivals[0] as number) < now - FPS_WINDOW_MS) this.arrivals.shift();
    const first = this.arrivals[0];
    // Rate over the span actually covered, so a camera that just started is not under-reported.
    const span = first === undefined ? 0 : Math.max(now - first, 1000 / this.config.fps);
    const fps = this.arrivals.length === 0 ? 0 : Math.round((this.arrivals.length / span) * 1000 * 100) / 100;
    return {
      cameraId: this.config.id,
      state: this.status,
      framesPerSecond: fps,
      restarts: this.restarts,
      ...(this.lastError !== undefined ? { lastError: this.lastError.slice(0, 1000) } : {}),
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.spawn();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.command?.kill('SIGKILL');
    await this.exited;
    this.setState('offline');
  }

  private spawn(): void {
    const { width, height, ffmpegPath } = this.opts;
    const args = ffmpegArgs(this.config.source, this.config.fps, width, height);
    const assembler = new FrameAssembler(width * height * 3, (frame) => this.onFrame(frame));
    const command = ffmpeg({ stdoutLines: 0 })
      .setFfmpegPath(ffmpegPath)
      .input(args.input)
      .inputOptions(args.inputOptions)
      .outputOptions(args.outputOptions);
    this.command = command;
    this.stderr.length = 0;
    this.setState('starting');
    let resolveExit!: () => void;
    this.exited = new Promise<void>((r) => (resolveExit = r));
    command.on('start', (line: string) => {
      // fluent-ffmpeg spawns after an async capability check: a stop() in between could not kill it yet.
      if (!this.running || this.command !== command) return void command.kill('SIGKILL');
      this.log.debug({ camera: this.id, command: line }, 'ffmpeg started');
    });
    command.on('stderr', (line: string) => {
      this.stderr.push(line);
      if (this.stderr.length > STDERR_LINES) this.stderr.shift();
    });
    command.on('error', (err: Error) => {
      resolveExit();
      this.onExit(command, err.message);
    });
    command.on('end', () => {
      resolveExit();
      this.onExit(command, 'ffmpeg ended: the source has no more frames', this.config.source.kind === 'file' && !this.config.source.loop);
    });
    const out = command.pipe();
    out.on('data', (chunk: Buffer) => {
      if (this.command === command) assembler.push(chunk);
    });
  }

  private onFrame(frame: Uint8Array): void {
    const at = performance.now();
    this.arrivals.push(at);
    if (this.status !== 'online') {
      this.backoff.reset();
      this.setState('online');
    }
    this.emit('frame', frame, at);
  }

  /** `finished`: a file that is not looped played to its end; that is not a failure to retry. */
  private onExit(command: ffmpeg.FfmpegCommand, message: string, finished = false): void {
    if (this.command !== command) return;
    this.command = null;
    if (!this.running) return;
    const tail = this.stderr.filter((l) => l.trim() !== '').slice(-3).join(' | ');
    this.lastError = tail !== '' && !message.includes(tail) ? `${message}: ${tail}` : message;
    this.arrivals.length = 0;
    this.setState('offline');
    if (finished) {
      this.log.info({ camera: this.id }, 'file played to its end (loop: false)');
      return;
    }
    const delay = this.backoff.next();
    this.log.warn({ camera: this.id, reason: this.lastError, restartInMs: delay }, 'camera stopped; restarting');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.running) return;
      this.restarts++;
      this.spawn();
    }, delay);
  }

  private setState(s: CameraState['state']): void {
    if (this.status === s) return;
    this.status = s;
    this.emit('state', this.state());
  }
}
