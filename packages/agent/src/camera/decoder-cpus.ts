import { execFile, spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';
import { allowedCpus, formatCpuList } from './cpu-list.js';
import { processStat } from './process-stat.js';

/** The config's decoderCpus: 'auto', 'all', or the CPUs to keep the decoders on. */
export type DecoderCpuSetting = 'auto' | 'all' | number[];

export interface DecoderCpusOptions {
  setting: DecoderCpuSetting;
  /** onnxruntime's intra-op threads: 'auto' leaves this many CPUs to inference */
  inferenceThreads: number;
  /** taskset (util-linux), which starts ffmpeg on its CPUs and moves running ones */
  tasksetPath?: string;
  /** how often the decoders' CPU use is read (ms) */
  sampleMs?: number;
  /** 'auto' keeps the decoders apart only if this many CPUs are left to them */
  minDecoderCpus?: number;
  /** share of their CPUs the decoders may use before 'auto' lets them use all (0-1) */
  saturatedShare?: number;
  /** samples in a row at that share before it does */
  saturatedSamples?: number;
  /** the CPUs this process may use; read from /proc when not given */
  allowed?: number[] | null;
}

/** What a camera starting ffmpeg needs: the CPUs to start it on, and the tool that does. */
export interface DecoderPlacement {
  taskset: string;
  cpus: number[];
}

const DEFAULTS = { tasksetPath: 'taskset', sampleMs: 5000, minDecoderCpus: 2, saturatedShare: 0.7, saturatedSamples: 2 };

export class DecoderCpuError extends Error {
  override readonly name = 'DecoderCpuError';
}

/**
 * Keeps the ffmpeg decoders off the CPUs inference runs on. A decoder that
 * shares a core with inference slows the run it interrupts (four 1080p
 * decoders on a 2-core box: MobileNetV2 run p95 12.3-13.2 ms, 9.6 ms with
 * the decoders on the other core), and a waking inference thread can wait a
 * scheduler slice behind it. But decoders squeezed onto too few CPUs queue
 * behind each other: on that box, the four on one core reached the agent
 * ~5 ms later at p95 (capture delay p95 19-25 ms against 13-17 ms), more
 * than the inference gained.
 *
 * So 'auto' leaves the last `inferenceThreads` of the agent's CPUs to
 * inference only where at least `minDecoderCpus` (2) are left to the
 * decoders, and watches the decoders' CPU use: when they need more than 70 %
 * of the CPUs left to them (saturatedShare, saturatedSamples in a row), it
 * lets every decoder use every CPU, moving the running ones at once, and
 * says so: frames late from a starved decoder cost more than a slower
 * inference. An explicit list is kept; saturation is only logged. 'all'
 * places nothing.
 */
export class DecoderCpus {
  private readonly opts: typeof DEFAULTS & DecoderCpusOptions;
  private readonly allowed: number[] | null;
  private confined: number[] | null;
  private timer: NodeJS.Timeout | null = null;
  /** each running decoder's CPU seconds at the last sample */
  private readonly lastCpu = new Map<number, number>();
  private lastSampleAt = 0;
  private saturatedRun = 0;
  private warnedSaturated = false;
  private cores = 0;

  constructor(
    options: DecoderCpusOptions,
    /** the decoders running now */
    private readonly pids: () => number[],
    private readonly log: Logger,
  ) {
    this.opts = { ...DEFAULTS, ...options };
    this.allowed = options.allowed === undefined ? allowedCpus() : options.allowed;
    this.confined = this.resolve();
  }

  /** Whether decoders are being kept off inference's CPUs now. */
  get isConfined(): boolean {
    return this.confined !== null;
  }

  /** CPU cores the decoders used over the last sample. */
  get coresUsed(): number {
    return this.cores;
  }

  /** Where a decoder started now goes, or null: anywhere. */
  get placement(): DecoderPlacement | null {
    return this.confined ? { taskset: this.opts.tasksetPath, cpus: this.confined } : null;
  }

  /** Starts measuring the decoders' CPU use; while they are confined, it also decides whether they need every CPU. */
  start(): void {
    if (this.timer) return;
    this.lastSampleAt = performance.now();
    this.timer = setInterval(() => this.sample(), this.opts.sampleMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.lastCpu.clear();
  }

  private resolve(): number[] | null {
    const { setting, inferenceThreads } = this.opts;
    if (setting === 'all') return null;
    const allowed = this.allowed;
    if (setting === 'auto') {
      if (!allowed) return null;
      if (allowed.length - inferenceThreads < this.opts.minDecoderCpus) {
        this.log.info({ cpus: formatCpuList(allowed), inferenceThreads }, 'decoders share the CPUs with inference: too few CPUs to leave inference its own and the decoders enough');
        return null;
      }
      const cpus = allowed.slice(0, allowed.length - inferenceThreads);
      if (!this.tasksetWorks()) {
        this.log.warn({ taskset: this.opts.tasksetPath }, 'decoders share the CPUs with inference: taskset (util-linux) is not there to keep them apart');
        return null;
      }
      this.log.info({ decoderCpus: formatCpuList(cpus), inferenceCpus: formatCpuList(allowed.slice(cpus.length)) }, 'decoders kept off the CPUs left to inference');
      return cpus;
    }
    if (!allowed) throw new DecoderCpuError(`decoderCpus [${formatCpuList(setting)}]: this system does not say which CPUs the agent may use (no /proc); use 'auto' or 'all'`);
    const outside = setting.filter((c) => !allowed.includes(c));
    if (outside.length > 0) throw new DecoderCpuError(`decoderCpus: CPU ${formatCpuList(outside)} is not one the agent may use (${formatCpuList(allowed)})`);
    if (!this.tasksetWorks()) throw new DecoderCpuError(`decoderCpus [${formatCpuList(setting)}] needs taskset (util-linux) at '${this.opts.tasksetPath}'`);
    return [...setting].sort((a, b) => a - b);
  }

  private tasksetWorks(): boolean {
    const probe = spawnSync(this.opts.tasksetPath, ['--version'], { stdio: 'ignore', timeout: 5000 });
    return probe.error === undefined && probe.status === 0;
  }

  /** Reads the decoders' CPU time since the last sample; a decoder seen for the first time counts from now. */
  private sample(): void {
    const now = performance.now();
    const seconds = (now - this.lastSampleAt) / 1000;
    this.lastSampleAt = now;
    let used = 0;
    const seen = new Set<number>();
    for (const pid of this.pids()) {
      const cpu = processStat(pid)?.cpuSeconds;
      if (cpu === undefined) continue;
      seen.add(pid);
      const before = this.lastCpu.get(pid);
      if (before !== undefined) used += cpu - before;
      this.lastCpu.set(pid, cpu);
    }
    for (const pid of this.lastCpu.keys()) if (!seen.has(pid)) this.lastCpu.delete(pid);
    if (seconds <= 0) return;
    this.cores = used / seconds;
    const confined = this.confined;
    if (!confined) return;
    const share = this.cores / confined.length;
    this.saturatedRun = share >= this.opts.saturatedShare ? this.saturatedRun + 1 : 0;
    if (this.saturatedRun < this.opts.saturatedSamples) return;
    const figures = { decoderCpus: formatCpuList(confined), coresUsed: Number(this.cores.toFixed(2)) };
    if (this.opts.setting !== 'auto') {
      if (!this.warnedSaturated) this.log.warn(figures, 'decoders use all the CPUs decoderCpus gives them: frames will arrive late');
      this.warnedSaturated = true;
      return;
    }
    this.widen(figures);
  }

  /** From now on decoders go anywhere; the running ones are moved now. */
  private widen(figures: Record<string, unknown>): void {
    this.confined = null;
    const everywhere = this.allowed ? formatCpuList(this.allowed) : null;
    this.log.warn({ ...figures, now: everywhere }, 'decoders need more than the CPUs left to them: letting them use every CPU (inference will be slower)');
    if (!everywhere) return;
    for (const pid of this.pids()) {
      execFile(this.opts.tasksetPath, ['-a', '-p', '-c', everywhere, String(pid)], (err) => {
        // A decoder that ended meanwhile is no loss: the next one starts unconfined.
        if (err) this.log.debug({ pid, err: err.message }, 'could not move a decoder');
      });
    }
  }
}
