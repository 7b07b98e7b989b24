/**
 * The control plane at fleet scale, against aedes alone: simulated devices
 * (bench/lib/fleet-simulator.ts, real mqtt.js connections speaking the
 * contract) in child processes, the control plane and the bare broker each
 * in a process of their own.
 *
 * 1. Connections held: the fleet ramps up to each size in
 *    PERCH_BENCH_FLEET_DEVICES while every device sends a window every
 *    PERCH_BENCH_FLEET_WINDOW_SECONDS (the agent's default 10 s); resident
 *    memory of the control plane in all and per connection, and of the bare
 *    broker with the same fleet.
 * 2. Sustained ingest: the fleet publishes PERCH_BENCH_FLEET_RATE windows a
 *    second in all (QoS 1); windows committed to SQLite per second and
 *    publish-to-commit latency, against windows delivered per second to a
 *    counting subscriber of the bare broker under the same load. Rounds
 *    alternate control plane and bare broker (A B B A).
 * 3. Reconnect storm: with the largest fleet connected, the control plane is
 *    stopped and started again on the same data and port; how long until
 *    every device is back, refused CONNACKs, devices never back; then every
 *    window the fleet produced must be in SQLite once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { SimulatedFleet } from './lib/fleet-processes.js';
import { FleetServer } from './lib/fleet-server.js';
import type { ServerStats } from './lib/fleet-server-process.js';
import { DEFAULT_WINDOW_SHAPE } from './lib/fleet-windows.js';
import { envNumber } from './lib/options.js';
import { cpuSeconds } from './lib/proc-stats.js';
import { median, round } from './lib/stats.js';

const MiB = 2 ** 20;
/** Most devices one simulator process holds (its file descriptor limit here is 20,000). */
const DEVICES_PER_PROCESS = 5000;
const WARMUP_MS = 3000;
/** Telemetry may run behind by this much before a round's figures are read: drained outboxes between rounds. */
const DRAIN_TIMEOUT_MS = 60_000;
const STORM_DEADLINE_MS = 60_000;

interface Side {
  name: 'control plane' | 'bare aedes';
  server: FleetServer;
  fleet: SimulatedFleet;
}

interface Round {
  offeredPerSecond: number;
  ingestedPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU cores the server process used */
  serverCores: number;
  /** windows produced and not yet acknowledged at the end of the round */
  backlog: number;
  schedulerLagMaxMs: number;
}

function deviceCounts(): number[] {
  const raw = process.env['PERCH_BENCH_FLEET_DEVICES'] ?? '1000,10000';
  const counts = raw.split(',').map((s) => Number(s.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 100_000)) throw new Error(`PERCH_BENCH_FLEET_DEVICES must be whole numbers in [1, 100000], got '${raw}'`);
  return [...counts].sort((a, b) => a - b);
}

export const fleetScale: Benchmark = {
  name: 'fleet-scale',
  async run(_options, log): Promise<BenchReport> {
    const sizes = deviceCounts();
    const largest = sizes.at(-1) as number;
    const rate = envNumber('PERCH_BENCH_FLEET_RATE', 5000, { min: 1, max: 100_000 });
    const seconds = envNumber('PERCH_BENCH_FLEET_SECONDS', 10, { min: 1, max: 600 });
    const connectRate = envNumber('PERCH_BENCH_FLEET_CONNECT_RATE', 1000, { min: 1, max: 100_000 });
    const windowSeconds = envNumber('PERCH_BENCH_FLEET_WINDOW_SECONDS', 10, { min: 0.1, max: 3600 });
    const cameras = envNumber('PERCH_BENCH_FLEET_CAMERAS', 1, { min: 0, max: 64, integer: true });
    const storm = envNumber('PERCH_BENCH_FLEET_STORM', 1, { min: 0, max: 1, integer: true }) === 1;
    const processes = envNumber('PERCH_BENCH_FLEET_PROCESSES', Math.max(2, Math.ceil(largest / DEVICES_PER_PROCESS)), { min: 1, max: 64, integer: true });
    const shape = { ...DEFAULT_WINDOW_SHAPE, labels: [...DEFAULT_WINDOW_SHAPE.labels], cameras };
    const realistic = { intervalMs: windowSeconds * 1000, shape };

    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-fleet-scale-'));
    const rows: string[][] = [];
    const notes: string[] = [];
    const figures: Record<string, unknown> = { sizes, rate, seconds, connectRate, windowSeconds, cameras, processes };
    // Everything started, for the cleanup: the control plane's entry is replaced when the storm restarts it.
    const running: { servers: FleetServer[]; fleets: SimulatedFleet[] } = { servers: [], fleets: [] };
    try {
      log(`starting a control plane and a bare aedes broker, each in its own process`);
      const cpServer = await FleetServer.start({ mode: 'control-plane', dataDir: path.join(dir, 'cp'), logFile: path.join(dir, 'control-plane.log') });
      running.servers.push(cpServer);
      const bareServer = await FleetServer.start({ mode: 'bare', dataDir: path.join(dir, 'bare'), logFile: path.join(dir, 'bare.log') });
      running.servers.push(bareServer);
      await sleep(1000);
      const idle = { cp: (await cpServer.stats()).rssBytes, bare: (await bareServer.stats()).rssBytes };
      figures.idleRssMiB = { controlPlane: mib(idle.cp), bare: mib(idle.bare) };

      const ids = Array.from({ length: largest }, (_, i) => `fleet-${String(i).padStart(6, '0')}`);
      log(`provisioning ${largest} devices`);
      const passwords: string[] = [];
      for (let i = 0; i < ids.length; i += 2000) passwords.push(...(await cpServer.provision(ids.slice(i, i + 2000))));
      const devices = ids.map((deviceId, i) => ({ deviceId, password: passwords[i] as string }));
      const common = { devices, processes, dir, connectRatePerSecond: connectRate, telemetry: realistic, statsEveryMs: 5000 };
      const cpFleet = await SimulatedFleet.spawn({ ...common, url: `mqtt://127.0.0.1:${cpServer.mqttPort}`, label: 'cp' });
      running.fleets.push(cpFleet);
      const bareFleet = await SimulatedFleet.spawn({ ...common, url: `mqtt://127.0.0.1:${bareServer.mqttPort}`, label: 'bare' });
      running.fleets.push(bareFleet);
      const cpSide: Side = { name: 'control plane', server: cpServer, fleet: cpFleet };
      const bareSide: Side = { name: 'bare aedes', server: bareServer, fleet: bareFleet };

      const bySize: Record<string, unknown> = {};
      for (const n of sizes) {
        const entry: Record<string, unknown> = {};
        // 1. Ramp up and hold.
        for (const side of [cpSide, bareSide]) {
          const t0 = performance.now();
          await side.fleet.start(n);
          const s = await side.fleet.until((f) => f.connected >= n, `${n} devices connected to the ${side.name}`, Math.max(120_000, (4 * n * 1000) / connectRate));
          const rampS = (performance.now() - t0) / 1000;
          log(`${side.name}: ${n} devices connected in ${rampS.toFixed(1)} s (${s.connackFailures} refused CONNACKs, ${s.connectErrors} failed connects)`);
          entry[side.name === 'control plane' ? 'rampCp' : 'rampBare'] = { seconds: round(rampS, 2), connackFailures: s.connackFailures, connectErrors: s.connectErrors };
        }
        await sleep(5000);
        const memory: Record<string, { rss: number; perConnKiB: number; clients: number }> = {};
        for (const side of [cpSide, bareSide]) {
          const readings: ServerStats[] = [];
          for (let k = 0; k < 3; k++) {
            readings.push(await side.server.stats());
            await sleep(1000);
          }
          const rss = median(readings.map((r) => r.rssBytes));
          const base = side === cpSide ? idle.cp : idle.bare;
          memory[side.name] = { rss, perConnKiB: (rss - base) / n / 1024, clients: readings.at(-1)?.connectedClients ?? 0 };
        }
        const cpMem = memory['control plane'] as { rss: number; perConnKiB: number; clients: number };
        const bareMem = memory['bare aedes'] as { rss: number; perConnKiB: number; clients: number };
        log(`held ${n}: control plane ${mib(cpMem.rss)} MiB (${cpMem.perConnKiB.toFixed(1)} KiB per connection), bare aedes ${mib(bareMem.rss)} MiB (${bareMem.perConnKiB.toFixed(1)} KiB)`);
        entry.memory = { controlPlaneRssMiB: mib(cpMem.rss), controlPlaneKiBPerConnection: round(cpMem.perConnKiB, 1), bareRssMiB: mib(bareMem.rss), bareKiBPerConnection: round(bareMem.perConnKiB, 1), controlPlaneClients: cpMem.clients, bareClients: bareMem.clients };

        // 2. Sustained ingest, rounds alternating A B B A.
        await cpSide.fleet.setTelemetry(null);
        await bareSide.fleet.setTelemetry(null);
        await drain(cpSide);
        await drain(bareSide);
        const load = { intervalMs: (n / rate) * 1000, shape };
        const rounds: Record<string, Round[]> = { 'control plane': [], 'bare aedes': [] };
        for (const side of [cpSide, bareSide, bareSide, cpSide]) {
          const r = await measureRound(side, load, seconds);
          (rounds[side.name] as Round[]).push(r);
          log(`${side.name}, ${n} devices: offered ${r.offeredPerSecond.toFixed(0)}/s, stored ${r.ingestedPerSecond.toFixed(0)}/s, p99 ${r.p99Ms.toFixed(0)} ms, server ${r.serverCores.toFixed(2)} cores`);
        }
        const cpRate = median(rounds['control plane']!.map((r) => r.ingestedPerSecond));
        const bareRate = median(rounds['bare aedes']!.map((r) => r.ingestedPerSecond));
        for (const side of [cpSide, bareSide]) {
          const rs = rounds[side.name] as Round[];
          const mem = memory[side.name] as { rss: number; perConnKiB: number };
          const ingested = median(rs.map((r) => r.ingestedPerSecond));
          rows.push([
            String(n),
            side.name,
            mib(mem.rss).toFixed(0),
            mem.perConnKiB.toFixed(1),
            median(rs.map((r) => r.offeredPerSecond)).toFixed(0),
            ingested.toFixed(0),
            side === cpSide ? (cpRate / bareRate).toFixed(2) : '1.00',
            median(rs.map((r) => r.p50Ms)).toFixed(0),
            median(rs.map((r) => r.p99Ms)).toFixed(0),
            median(rs.map((r) => r.serverCores)).toFixed(2),
          ]);
        }
        entry.rounds = rounds;
        entry.ingestRatio = round(cpRate / bareRate, 3);
        bySize[String(n)] = entry;
        await cpSide.fleet.setTelemetry(realistic);
        await bareSide.fleet.setTelemetry(realistic);
      }
      figures.bySize = bySize;

      // The bare side is done: its processes would only take CPU from the storm.
      await bareFleet.close();
      await bareServer.stop();

      if (storm) {
        const result = await reconnectStorm(cpSide, largest, dir, log);
        figures.reconnectStorm = result.figures;
        cpSide.server = result.server;
        running.servers.push(result.server);
        notes.push(result.note);
      }

      // Every window the fleet produced is stored once, across rounds and the restart.
      await cpSide.fleet.setTelemetry(null);
      const drained = await drain(cpSide);
      const a = await cpSide.server.audit([], false);
      figures.windows = { produced: drained.windowsProduced, dropped: drained.windowsDropped, resent: drained.windowsResent, stored: a.telemetryRows };
      notes.push(
        `windows: ${drained.windowsProduced} produced by the fleet over the whole run (${drained.windowsResent} sent again after a reconnect, ${drained.windowsDropped} dropped by full outboxes), ` +
          `${a.telemetryRows} stored: ${a.telemetryRows === drained.windowsProduced - drained.windowsDropped ? 'every one once' : 'MISMATCH'}`,
      );

      const top = bySize[String(largest)] as { memory: { controlPlaneRssMiB: number }; ingestRatio: number; rounds: Record<string, Round[]> };
      const topCp = top.rounds['control plane'] as Round[];
      const topRate = median(topCp.map((r) => r.ingestedPerSecond));
      const topP99 = median(topCp.map((r) => r.p99Ms));
      notes.push(
        `goals at ${largest} devices: control plane RSS ${top.memory.controlPlaneRssMiB} MiB (<= 512 MB), ${topRate.toFixed(0)} windows/s stored (>= 5000 when offered ${rate}), ` +
          `x${top.ingestRatio.toFixed(2)} the bare broker's delivery (>= 0.5), publish-to-commit p99 ${topP99.toFixed(0)} ms (<= 500)`,
      );
      notes.push(
        `each round: ${seconds} s measured after ${WARMUP_MS / 1000} s of warm-up, the other fleet silent; windows of ${cameras} camera(s) with ${shape.labels.length} labels at ${shape.fps} fps ` +
          `(class counts, confidence and latency histograms); latency from the window's windowEnd (set at publish) to its commit in SQLite (control plane) or its delivery to the counting subscriber (bare)`,
      );
      notes.push(`simulators: ${processes} processes per fleet; RSS per connection = (RSS held - RSS idle) / devices, idle RSS ${mib(idle.cp)} MiB (control plane), ${mib(idle.bare)} MiB (bare)`);
    } finally {
      for (const f of running.fleets) await f.close().catch(() => undefined);
      for (const s of running.servers) await s.stop().catch(() => s.kill());
      await rm(dir, { recursive: true, force: true });
    }
    return {
      title: 'fleet-scale: simulated devices against the control plane and against aedes alone',
      table: { columns: ['devices', 'server', 'RSS MiB', 'KiB / conn', 'offered /s', 'stored /s', 'vs bare', 'p50 ms', 'p99 ms', 'server cores'], rows },
      notes,
      figures,
    };
  },
};

/** One measured round: `side`'s fleet publishes `load`; what its server took in, how fast and how late. */
async function measureRound(side: Side, load: { intervalMs: number; shape: { cameras: number; labels: string[]; fps: number } }, seconds: number): Promise<Round> {
  await side.fleet.setTelemetry(load);
  await sleep(WARMUP_MS);
  await side.server.resetLatency();
  const s0 = await side.server.stats();
  const f0 = await side.fleet.stats();
  const cpu0 = cpuSeconds(side.server.pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const s1 = await side.server.stats();
  const f1 = await side.fleet.stats();
  const dt = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(side.server.pid);
  await side.fleet.setTelemetry(null);
  await drain(side);
  return {
    offeredPerSecond: (f1.windowsProduced - f0.windowsProduced) / dt,
    ingestedPerSecond: (s1.windows - s0.windows) / dt,
    p50Ms: s1.latencyMs.p50,
    p99Ms: s1.latencyMs.p99,
    maxMs: s1.latencyMs.max,
    serverCores: (cpu1 - cpu0) / dt,
    backlog: f1.outboxPending,
    schedulerLagMaxMs: f1.schedulerLagMaxMs,
  };
}

/** Waits until the fleet's outboxes are empty and its server has taken in every window. */
async function drain(side: Side) {
  const s = await side.fleet.until((f) => f.outboxPending === 0, `the ${side.name} fleet's outboxes to drain`, DRAIN_TIMEOUT_MS);
  await sleep(500);
  return s;
}

async function reconnectStorm(side: Side, n: number, dir: string, log: (line: string) => void) {
  const before = await side.fleet.stats();
  const port = side.server.mqttPort;
  log(`reconnect storm: stopping the control plane with ${before.connected} devices connected`);
  const t0 = performance.now();
  const stopMs = await side.server.stop();
  await side.fleet.until((f) => f.connected === 0, 'every device to see the control plane gone', 60_000, 100);
  const server = await FleetServer.start({ mode: 'control-plane', dataDir: path.join(dir, 'cp'), port, logFile: path.join(dir, 'control-plane.log') });
  const up = performance.now();
  log(`control plane back on port ${port} after ${((up - t0) / 1000).toFixed(1)} s`);
  let backAt: number | null = null;
  let s = await side.fleet.stats();
  while (performance.now() - up < STORM_DEADLINE_MS * 2) {
    s = await side.fleet.stats();
    if (s.connected >= n) {
      backAt = performance.now();
      break;
    }
    await sleep(100);
  }
  const serverStats = await server.stats();
  const backS = backAt === null ? null : (backAt - up) / 1000;
  const failed = s.connackFailures - before.connackFailures;
  const refusedSubs = s.subscribeRefused - before.subscribeRefused;
  const never = n - s.connected;
  log(`reconnect storm: ${s.connected} of ${n} back ${backS === null ? 'not all' : `in ${backS.toFixed(1)} s`}; ${failed} refused CONNACKs`);
  const figures = {
    devices: n,
    stopMs: round(stopMs, 0),
    downSeconds: round((up - t0) / 1000, 2),
    allBackSeconds: backS === null ? null : round(backS, 2),
    connackFailures: failed,
    subscribeRefused: refusedSubs,
    connectErrorsWhileDown: s.connectErrors - before.connectErrors,
    neverBack: never,
    reconnects: s.reconnects - before.reconnects,
    controlPlaneClients: serverStats.connectedClients,
    rssAfterMiB: mib(serverStats.rssBytes),
  };
  const verdict = backS !== null && backS <= STORM_DEADLINE_MS / 1000 && failed === 0 && refusedSubs === 0 ? 'goal met' : 'GOAL MISSED';
  const note =
    `reconnect storm (${n} devices, control plane stopped in ${(stopMs / 1000).toFixed(1)} s and started again on the same data and port ${((up - t0) / 1000).toFixed(1)} s after the stop began): ` +
    `${backS === null ? `only ${s.connected} back after ${(STORM_DEADLINE_MS * 2) / 1000} s` : `all back ${backS.toFixed(1)} s after it listened again`}, ${failed} refused CONNACKs, ${refusedSubs} refused subscriptions, ` +
    `${never} never back; ${figures.connectErrorsWhileDown} connects refused by the closed port meanwhile (jittered backoff, 500 ms doubling to 30 s): ${verdict} (all back within 60 s, none refused)`;
  return { server, figures, note };
}

const mib = (bytes: number): number => round(bytes / MiB, 1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
