import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  platform: string;
  arch: string;
  totalMemoryGiB: number;
  node: string;
  /** 1-minute load average at start: a busy shared machine shows here. */
  loadAverage1m: number;
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    platform: os.platform(),
    arch: os.arch(),
    totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    loadAverage1m: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
  };
}
