import { readFileSync } from 'node:fs';

/**
 * Parses a Linux CPU list as /proc and taskset write it ("0-3,6"): sorted,
 * without repeats. Throws on anything else.
 */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.trim().split(',')) {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!range) throw new Error(`not a CPU list: '${text}'`);
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    if (to < from) throw new Error(`not a CPU list: '${text}'`);
    for (let c = from; c <= to; c++) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** A list taskset -c takes. */
export function formatCpuList(cpus: readonly number[]): string {
  return cpus.join(',');
}

/**
 * The CPUs this process may run on (its cpuset, e.g. a container's), read
 * from /proc; null where there is no /proc (not Linux) or it cannot be read.
 */
export function allowedCpus(statusPath = '/proc/self/status'): number[] | null {
  let status: string;
  try {
    status = readFileSync(statusPath, 'utf8');
  } catch {
    return null;
  }
  const line = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(status);
  if (!line?.[1]) return null;
  try {
    return parseCpuList(line[1]);
  } catch {
    return null;
  }
}
