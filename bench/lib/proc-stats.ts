/**
 * What the kernel says about a process (Linux /proc): resident memory and
 * CPU time, for the agent process and the ffmpeg processes it spawned.
 * Figures from outside the process, so they include the inference worker
 * threads, onnxruntime's native allocations and everything V8 does not see.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { allowedCpus, formatCpuList, processStat } from '@perch/agent';

/** Resident memory in bytes: the total (VmRSS) and its anonymous part (heaps, arenas, stacks); the rest is mapped files and shared memory. */
export interface Resident {
  rss: number;
  anon: number;
}

/** NaN figures when the process is gone. */
export function resident(pid: number): Resident {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rss: Number.NaN, anon: Number.NaN };
  }
  const kib = (field: string): number => {
    const v = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1];
    return v === undefined ? Number.NaN : Number(v) * 1024;
  };
  return { rss: kib('VmRSS'), anon: kib('RssAnon') };
}

/** Resident set size (VmRSS) in bytes; NaN when the process is gone. */
export function rssBytes(pid: number): number {
  return resident(pid).rss;
}

/** CPU seconds (user + system) the process has used so far; NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  return processStat(pid)?.cpuSeconds ?? Number.NaN;
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** Direct children of a process (e.g. the agent's ffmpeg processes). */
export function childPids(pid: number): number[] {
  return allPids().filter((p) => processStat(p)?.ppid === pid);
}

/** The CPUs a process may run on ("0,1"); '' when it is gone. */
export function cpusAllowed(pid: number): string {
  return formatCpuList(allowedCpus(`/proc/${pid}/status`) ?? []);
}

/** The command line of a process, arguments joined by spaces; '' when it is gone. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/**
 * CPU seconds a set of processes used between two readings; a process that
 * started in between counts from zero, one that ended in between counts up
 * to its last reading (the kernel keeps no more), so restarts are included.
 */
export class CpuMeter {
  private readonly baseline = new Map<number, number>();
  private readonly latest = new Map<number, number>();
  private sampled = false;

  constructor(private readonly pids: () => number[]) {}

  /** Reads every current process; call at the start, now and then (to catch short-lived ones), and at the end. */
  sample(): void {
    for (const pid of this.pids()) {
      const s = cpuSeconds(pid);
      if (Number.isNaN(s)) continue;
      if (!this.baseline.has(pid)) this.baseline.set(pid, this.sampled ? 0 : s);
      this.latest.set(pid, s);
    }
    this.sampled = true;
  }

  /** CPU seconds used since the first sample, summed over the processes. */
  get seconds(): number {
    let total = 0;
    for (const [pid, end] of this.latest) total += end - (this.baseline.get(pid) ?? end);
    return total;
  }

  /** How many distinct processes were seen. */
  get processes(): number {
    return this.latest.size;
  }
}
