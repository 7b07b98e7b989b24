/**
 * The `Environment=` settings of one of Perch's systemd units
 * (deploy/systemd), so a benchmark runs a process as its unit runs it on a
 * box: a figure measured without them would not be the deployed one.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const UNITS = path.resolve(import.meta.dirname, '../../deploy/systemd');

export function unitEnvironment(unit: 'perch-control-plane.service' | 'perch-agent.service'): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path.join(UNITS, unit), 'utf8').split('\n')) {
    const m = /^Environment=(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const pair of (m[1] as string).split(/\s+/).filter((p) => p !== '')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`${unit}: cannot read Environment entry ${JSON.stringify(pair)} (KEY=value, no quotes)`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}
