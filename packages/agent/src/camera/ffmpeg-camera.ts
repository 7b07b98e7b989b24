import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { CameraErrorKind, CameraHealth, CameraState } from '@perch/shared';
import { JitteredBackoff } from '../backoff/jittered-backoff.js';
import type { Logger } from '../log/logger.js';
import type { CameraConfig, CameraSource } from './camera-config.js';
import { cameraHealth, DEFAULT_HEALTH_POLICY, type HealthPolicy } from './camera-health.js';
import { ffmpegArgs, ffmpegArgv, type ResizeMode } from './ffmpeg-args.js';
import type { DecoderPlacement } from './decoder-cpus.js';
import { ffmpegCapabilities } from './ffmpeg-capabilities.js';
import { FfmpegProcess, type FfmpegExit } from './ffmpeg-process.js';
import { FrameRateMeter } from './frame-rate-meter.js';
import { HostLookupError, withResolvedHost } from './source-host.js';
import { classifyStderr } from './stderr-classifier.js';
import { redactSecrets, urlPassword } from './url-credentials.js';

export interface FfmpegCameraOptions {
  ffmpegPath: string;
  /** the active model's input size: ffmpeg scales to it */
  width: number;
  height: number;
  /** how frames are fitted to that size; stretch by default */
  resize?: ResizeMode;
  /** backoff between ffmpeg restarts (full jitter) */
  restart?: { minMs: number; maxMs: number };
  /** niceness of ffmpeg (the agent config's ffmpegNice) */
  nice?: number;
  /** the CPUs each new ffmpeg run goes on (asked at every start: it may change); none: anywhere */
  placement?: () => DecoderPlacement | null;
  /** where in each frame interval this camera's frame is taken, 0 to 1, so cameras sharing a model take turns */
  phase?: number;
  /** frames must flow this long before the backoff starts again from its smallest window */
  healthyAfterMs?: number;
  health?: Partial<HealthPolicy>;
  /** counters of the camera this one replaces (a model switch), so they count since the agent started */
  counters?: { restarts: number; stalls: number };
}

/** One failed ffmpeg run. */
export interface CameraIncident {
  kind: CameraErrorKind;
  message: string;
  /** the run was ended by the stall watchdog */
  stalled: boolean;
}

type CameraEvents = {
  frame: [frame: Uint8Array, arrivedAt: number];
  /** how late a frame reached the agent by the stream's own clock (ms; see StreamClock) */
  'frame-delay': [delayMs: number];
  /** health changed, or a new incident changed the error */
  state: [state: CameraState];
  /** an ffmpeg run failed (or stalled); a restart follows after the backoff */
  incident: [incident: CameraIncident];
  /** ffmpeg started again after an incident */
  restart: [];
};

type NetworkSource = Extract<CameraSource, { kind: 'rtsp' | 'mjpeg' }>;

function isNetwork(s: CameraSource): s is NetworkSource {
  return s.kind === 'rtsp' || s.kind === 'mjpeg';
}

/** Why a run could not start: a known kind and a message that is safe to show. */
class StartError extends Error {
  constructor(
    readonly kind: CameraErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One camera read through ffmpeg as rgb24 frames of the model's size, and
 * its supervisor: ffmpeg is restarted with jittered exponential backoff
 * whenever it exits or no frame came within `stallTimeoutMs`; the cause is
 * read from its stderr; health (starting/online/degraded/offline) and the
 * restart and stall counters are kept for the reported state and telemetry.
 */
export class FfmpegCamera extends EventEmitter<CameraEvents> {
  private readonly backoff: JitteredBackoff;
  private readonly policy: HealthPolicy;
  private readonly healthyAfterMs: number;
  private readonly meter = new FrameRateMeter();
  private running = false;
  /** bumped by start/stop, so an asynchronous start that lost the race does nothing */
  private generation = 0;
  private proc: FfmpegProcess | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private runStartedAt = 0;
  private lastFrameAt: number | null = null;
  private flowingSince: number | null = null;
  private failedBefore = false;
  private restarts: number;
  private stalls: number;
  private errorKind: CameraErrorKind | undefined;
  private lastError: string | undefined;
  private reported: CameraHealth = 'offline';
  private secrets: string[] = [];

  constructor(
    readonly config: CameraConfig,
    private readonly opts: FfmpegCameraOptions,
    private readonly log: Logger,
  ) {
    super();
    this.backoff = new JitteredBackoff(opts.restart?.minMs ?? 1000, opts.restart?.maxMs ?? 30_000);
    this.policy = { ...DEFAULT_HEALTH_POLICY, ...opts.health };
    this.healthyAfterMs = opts.healthyAfterMs ?? 30_000;
    this.restarts = opts.counters?.restarts ?? 0;
    this.stalls = opts.counters?.stalls ?? 0;
    const inUrl = isNetwork(config.source) ? urlPassword(config.source.url) : undefined;
    if (inUrl !== undefined) this.secrets.push(safeDecode(inUrl));
  }

  get id(): string {
    return this.config.id;
  }

  /** The running ffmpeg's process id, if one runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get size(): { width: number; height: number; resize: ResizeMode } {
    return { width: this.opts.width, height: this.opts.height, resize: this.opts.resize ?? 'stretch' };
  }

  state(): CameraState {
    const now = performance.now();
    return {
      cameraId: this.config.id,
      state: this.health(now),
      framesPerSecond: this.meter.rate(now, this.config.fps),
      restarts: this.restarts,
      stalls: this.stalls,
      ...(this.errorKind !== undefined ? { errorKind: this.errorKind } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError.slice(0, 1000) } : {}),
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.generation++;
    this.failedBefore = false;
    const tickMs = Math.max(50, Math.min(1000, this.config.stallTimeoutMs / 4));
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.evaluate();
    void this.spawn(this.generation);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.restartTimer = null;
    this.tickTimer = null;
    const proc = this.proc;
    this.proc = null;
    this.flowingSince = null;
    this.meter.clear();
    if (proc) {
      proc.kill('stop');
      await proc.exited;
    }
    this.evaluate();
  }

  private redact(text: string): string {
    return redactSecrets(text, this.secrets);
  }

  private async spawn(generation: number): Promise<void> {
    const source = this.config.source;
    let argv: string[];
    let input: string;
    try {
      const caps = await ffmpegCapabilities(this.opts.ffmpegPath).catch((err: Error) => {
        throw new StartError('unknown', err.message);
      });
      let runSource = source;
      let password: string | undefined;
      if (isNetwork(source)) {
        password = await this.readPassword(source);
        if (!caps.resolvesHostNames) runSource = { ...source, url: await this.resolveHost(source.url) };
      }
      const args = ffmpegArgs(runSource, { fps: this.config.fps, width: this.opts.width, height: this.opts.height, resize: this.opts.resize, decodeThreads: this.config.decodeThreads, phase: this.opts.phase }, caps, password === undefined ? {} : { password });
      argv = ffmpegArgv(args);
      input = args.input;
    } catch (err) {
      if (generation !== this.generation || !this.running) return;
      const e = err instanceof StartError ? err : new StartError('unknown', (err as Error).message);
      this.failed({ kind: e.kind, message: this.redact(e.message), stalled: false });
      return;
    }
    if (generation !== this.generation || !this.running) return;
    const proc = new FfmpegProcess({
      ffmpegPath: this.opts.ffmpegPath,
      argv,
      input,
      frameBytes: this.opts.width * this.opts.height * 3,
      redact: (t) => this.redact(t),
      ...(this.opts.nice !== undefined ? { nice: this.opts.nice } : {}),
      placement: this.opts.placement?.() ?? null,
    });
    this.proc = proc;
    this.runStartedAt = performance.now();
    this.lastFrameAt = null;
    this.flowingSince = null;
    this.meter.clear();
    this.log.debug({ camera: this.id, pid: proc.pid, command: this.redact(argv.join(' ')) }, 'ffmpeg started');
    proc.on('frame', (frame, at) => this.onFrame(proc, frame, at));
    proc.on('frame-delay', (ms) => {
      if (proc === this.proc) this.emit('frame-delay', ms);
    });
    void proc.exited.then((exit) => this.onExit(proc, exit));
  }

  private async readPassword(source: NetworkSource): Promise<string | undefined> {
    if (source.passwordFile === undefined) return undefined;
    let password: string;
    try {
      // A trailing newline is how editors save files, never part of a secret.
      password = (await readFile(source.passwordFile, 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      throw new StartError('unauthorized', `cannot read passwordFile ${source.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!this.secrets.includes(password)) this.secrets.push(password);
    return password;
  }

  private async resolveHost(url: string): Promise<string> {
    try {
      return await withResolvedHost(url);
    } catch (err) {
      if (err instanceof HostLookupError) throw new StartError(err.code === 'ENOTFOUND' ? 'not-found' : 'timeout', err.message);
      throw err;
    }
  }

  private onFrame(proc: FfmpegProcess, frame: Uint8Array, at: number): void {
    if (proc !== this.proc) return;
    this.lastFrameAt = at;
    this.meter.add(at);
    if (this.flowingSince === null) {
      this.flowingSince = at;
      this.evaluate();
    }
    this.emit('frame', frame, at);
  }

  /** The watchdog, the backoff reset after a healthy period, and health that changes with time alone. */
  private tick(): void {
    const now = performance.now();
    const proc = this.proc;
    if (proc) {
      const source = this.config.source;
      // The first frame also waits for ffmpeg's own timeout, so its more precise cause can win.
      const allowance = this.config.stallTimeoutMs + (this.lastFrameAt === null && isNetwork(source) ? source.timeoutMs : 0);
      if (now - (this.lastFrameAt ?? this.runStartedAt) >= allowance) proc.kill('stall');
    }
    if (this.flowingSince !== null && now - this.flowingSince >= this.healthyAfterMs) this.backoff.reset();
    this.evaluate();
  }

  private onExit(proc: FfmpegProcess, exit: FfmpegExit): void {
    if (proc !== this.proc) return;
    this.proc = null;
    this.flowingSince = null;
    this.meter.clear();
    if (!this.running) return;
    const source = this.config.source;
    if (exit.code === 0 && exit.killedFor === undefined && source.kind === 'file' && !source.loop) {
      // A file that is not looped played to its end: not a failure to retry.
      this.errorKind = 'exited';
      this.lastError = 'ffmpeg ended: the source has no more frames';
      this.failedBefore = true;
      this.log.info({ camera: this.id }, 'file played to its end (loop: false)');
      this.evaluate(true);
      return;
    }
    this.failed(this.describe(exit));
  }

  private describe(exit: FfmpegExit): CameraIncident {
    const tail = exit.stderr.slice(-3).join(' | ');
    const sinceFrameMs = performance.now() - (this.lastFrameAt ?? this.runStartedAt);
    if (exit.killedFor === 'stall') {
      const waited = this.lastFrameAt === null ? 'no first frame' : 'no frame';
      return { kind: 'stalled', message: `${waited} for ${Math.round(sinceFrameMs / 100) / 10} s${tail === '' ? '' : `: ${tail}`}`, stalled: true };
    }
    if (exit.spawnError !== undefined) return { kind: 'unknown', message: exit.spawnError, stalled: false };
    const source = this.config.source;
    const timedOut = isNetwork(source) && sinceFrameMs >= source.timeoutMs;
    const cause = classifyStderr(exit.stderr);
    if (cause) {
      // A peer that accepts and never answers: RTSP in ffmpeg 4.x and 5.x says nothing but
      // "Invalid data found" once the socket timeout ran out. Garbage gets the same words, but
      // with the protocol's complaints before them (and ffmpeg may chew on it for longer).
      const onlySummary = exit.stderr.every((l) => l.includes('Invalid data found when processing input'));
      if (cause.kind === 'invalid-data' && timedOut && this.lastFrameAt === null && onlySummary) {
        return { kind: 'timeout', message: `no answer within ${source.timeoutMs} ms: ${cause.line}`, stalled: false };
      }
      return { kind: cause.kind, message: cause.line, stalled: false };
    }
    if (exit.signal !== null) return { kind: 'exited', message: `ffmpeg died of ${exit.signal}${tail === '' ? '' : `: ${tail}`}`, stalled: false };
    if (exit.code === 0) {
      // Also ffmpeg 4.x on a stream that went silent mid-way: it ends without a word (and flushes
      // its last frames), so a frozen camera reads as ended; the reconnect then times out.
      const why = source.kind === 'file' || source.kind === 'synthetic' ? 'the source has no more frames' : 'the camera ended the stream';
      return { kind: 'exited', message: `ffmpeg ended: ${why}`, stalled: false };
    }
    return { kind: 'exited', message: `ffmpeg exited with code ${String(exit.code)}${tail === '' ? '' : `: ${tail}`}`, stalled: false };
  }

  private failed(incident: CameraIncident): void {
    this.errorKind = incident.kind;
    this.lastError = incident.message;
    this.failedBefore = true;
    if (incident.stalled) this.stalls++;
    this.emit('incident', incident);
    const delay = this.backoff.next();
    this.log.warn({ camera: this.id, errorKind: incident.kind, reason: incident.message, restartInMs: delay }, 'camera stopped; restarting');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.running) return;
      this.restarts++;
      this.emit('restart');
      void this.spawn(this.generation);
    }, delay);
    this.evaluate(true);
  }

  private health(now: number): CameraHealth {
    return cameraHealth(
      {
        now,
        running: this.running,
        flowingSince: this.flowingSince,
        failedBefore: this.failedBefore,
        framesPerSecond: this.meter.rate(now, this.config.fps),
        configuredFps: this.config.fps,
      },
      this.policy,
    );
  }

  /** Emits `state` when health changed (or `force`: a new error to report). */
  private evaluate(force = false): void {
    const state = this.state();
    if (!force && state.state === this.reported) return;
    this.reported = state.state;
    this.emit('state', state);
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
