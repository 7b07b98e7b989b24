/**
 * A fleet simulator in a process of its own, so a benchmark can spread ten
 * thousand connections over several processes (file descriptors, one core
 * each) and keep them off the control plane's event loop. The first
 * argument is a spec file (fleet-spec.ts). Commands come as JSON lines on
 * stdin; stdout carries JSON lines: `{ type: 'ready' }`, a `stats` line every
 * `statsEveryMs`, and a `reply` to each command. Ends when stdin closes.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { FleetSimulator, type DesiredStatePolicy } from './fleet-simulator.js';
import { fleetCommandSchema, fleetProcessSpecSchema } from './fleet-spec.js';
import { deriveSeed, mulberry32 } from '../../packages/control-plane/src/training/pet-park/prng.js';
import { resident } from './proc-stats.js';

function write(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: fleet-simulator-process <spec.json>');
  const spec = fleetProcessSpecSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  // A seeded share of devices fails or rolls back each generation: the same devices every run.
  const p = spec.desired;
  const policy: DesiredStatePolicy = (device, desired) => {
    const draw = mulberry32(deriveSeed(deriveSeed(p.seed, device.index), desired.generation))();
    const afterMs = Math.round(draw * p.afterMs);
    if (draw < p.failed) return { phase: 'failed', reason: 'simulated failure', afterMs };
    if (draw < p.failed + p.rolledBack) return { phase: 'rolled-back', reason: 'simulated health window failure', afterMs };
    return { phase: 'active', afterMs };
  };
  const sim = new FleetSimulator({
    url: spec.url,
    devices: spec.devices,
    claimToken: spec.claimToken,
    connectRatePerSecond: spec.connectRatePerSecond,
    keepaliveSeconds: spec.keepaliveSeconds,
    connectTimeoutMs: spec.connectTimeoutMs,
    reconnect: spec.reconnect,
    telemetry: spec.telemetry,
    artifact: spec.artifact,
    onDesired: policy,
    firstSeq: spec.firstSeq,
    seed: spec.seed,
  });
  const stats = () => ({ type: 'stats', at: Date.now(), pid: process.pid, rssBytes: resident(process.pid).rss, ...sim.stats() });
  const ticker = setInterval(() => write(stats()), spec.statsEveryMs);
  write({ type: 'ready', pid: process.pid, devices: sim.size });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const parsed = fleetCommandSchema.safeParse(JSON.parse(line));
    if (!parsed.success) {
      write({ type: 'error', message: parsed.error.message });
      continue;
    }
    const c = parsed.data;
    switch (c.cmd) {
      case 'start':
        sim.start(c.count);
        write({ type: 'reply', id: c.id });
        break;
      case 'telemetry':
        sim.setTelemetry(c.load);
        write({ type: 'reply', id: c.id });
        break;
      case 'stats':
        write({ type: 'reply', id: c.id, stats: stats() });
        break;
      case 'progress':
        write({ type: 'reply', id: c.id, progress: sim.progress().map((d) => [d.deviceId, d.firstSeq, d.nextSeq, d.acked]) });
        break;
      case 'stop':
        clearInterval(ticker);
        await sim.stop({ graceful: c.graceful });
        write({ type: 'reply', id: c.id, stats: stats() });
        break;
    }
  }
  clearInterval(ticker);
  await sim.stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
