import { readFileSync } from 'node:fs';

/** Linux reports process CPU time in USER_HZ ticks, 100 per second on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

export interface ProcessStat {
  ppid: number;
  /** user + system CPU seconds of the process itself (all its threads, not its children) */
  cpuSeconds: number;
}

/** What /proc/<pid>/stat says of a process (Linux); null when it is gone or there is no /proc. */
export function processStat(pid: number): ProcessStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name is in parentheses and may itself hold spaces or ')': the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state(3) ppid(4) ... utime(14) stime(15), counted from 1 with pid and name as 1 and 2.
  const ppid = Number(fields[1]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (![ppid, utime, stime].every(Number.isFinite)) return null;
  return { ppid, cpuSeconds: (utime + stime) / TICKS_PER_SECOND };
}
