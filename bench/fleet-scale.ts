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
 * 2. Sustained ingest: at each rate in PERCH_BENCH_FLEET_RATE (windows a
 *    second in all, QoS 1, open loop); windows committed to SQLite per second and
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
import { unitEnvironment } from './lib/unit-environment.js';
import { cpuSeconds } from './lib/proc-stats.js';
import { median, round } from './lib/stats.js';

const MiB = 2 ** 20;
/** Most devices one simulator process holds (its file descriptor limit here is 20,000). */
const DEVICES_PER_PROCESS = 5000;
const WARMUP_MS = 3000;
/** Telemetry may run behind by this much before a round's figures are read: drained outboxes between rounds. */
const DRAIN_TIMEOUT_MS = 60_000;
const STORM_DEADLINE_MS = 60_000;
/** A ramp that gains no device for this long has stalled. */
const NO_PROGRESS_MS = 60_000;

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

/** Offered loads in windows per second (PERCH_BENCH_FLEET_RATE, comma-separated): the agents' default window at 10,000 devices, and the goal. */
function rateList(): number[] {
  const raw = process.env['PERCH_BENCH_FLEET_RATE'] ?? '1000,5000';
  const rates = raw.split(',').map((s) => Number(s.trim()));
  if (rates.some((r) => !Number.isFinite(r) || r <= 0 || r > 100_000)) throw new Error(`PERCH_BENCH_FLEET_RATE must be numbers in (0, 100000], got '${raw}'`);
  return rates;
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
    const rates = rateList();
    const seconds = envNumber('PERCH_BENCH_FLEET_SECONDS', 10, { min: 1, max: 600 });
    const connectRate = envNumber('PERCH_BENCH_FLEET_CONNECT_RATE', 200, { min: 1, max: 100_000 });
    const windowSeconds = envNumber('PERCH_BENCH_FLEET_WINDOW_SECONDS', 10, { min: 0.1, max: 3600 });
    const cameras = envNumber('PERCH_BENCH_FLEET_CAMERAS', 1, { min: 0, max: 64, integer: true });
    const storm = envNumber('PERCH_BENCH_FLEET_STORM', 1, { min: 0, max: 1, integer: true }) === 1;
    // The bare baseline with retained messages indexed by topic, as the control plane's broker always has them.
    const retainedIndex = envNumber('PERCH_BENCH_FLEET_RETAINED_INDEX', 0, { min: 0, max: 1, integer: true }) === 1;
    const processes = envNumber('PERCH_BENCH_FLEET_PROCESSES', Math.max(2, Math.ceil(largest / DEVICES_PER_PROCESS)), { min: 1, max: 64, integer: true });
    const shape = { ...DEFAULT_WINDOW_SHAPE, labels: [...DEFAULT_WINDOW_SHAPE.labels], cameras };
    const realistic = { intervalMs: windowSeconds * 1000, shape };

    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-fleet-scale-'));
    const rows: string[][] = [];
    const notes: string[] = [];
    const figures: Record<string, unknown> = { sizes, rates, seconds, connectRate, windowSeconds, cameras, processes, retainedIndex };
    // Everything started, for the cleanup: the control plane's entry is replaced when the storm restarts it.
    const running: { servers: FleetServer[]; fleets: SimulatedFleet[] } = { servers: [], fleets: [] };
    try {
      log(`starting a control plane and a bare aedes broker, each in its own process`);
      const cpServer = await FleetServer.start({ mode: 'control-plane', dataDir: path.join(dir, 'cp'), logFile: path.join(dir, 'control-plane.log'), retainedIndex });
      running.servers.push(cpServer);
      const bareServer = await FleetServer.start({ mode: 'bare', dataDir: path.join(dir, 'bare'), logFile: path.join(dir, 'bare.log'), retainedIndex });
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
          const ramp = await rampUp(side, n, connectRate, log);
          log(`${side.name}: ${ramp.connected} of ${n} devices connected in ${ramp.seconds.toFixed(1)} s (${ramp.connackFailures} refused CONNACKs, ${ramp.connectErrors} failed connects)`);
          entry[side === cpSide ? 'rampCp' : 'rampBare'] = ramp;
        }
        await sleep(5000);
        type Held = { rss: number; perConnKiB: number; connected: number; heapUsed: number; heapCommitted: number; newSpace: number };
        const memory: Record<string, Held> = {};
        for (const side of [cpSide, bareSide]) {
          const readings: ServerStats[] = [];
          for (let k = 0; k < 3; k++) {
            readings.push(await side.server.stats());
            await sleep(1000);
          }
          const connected = (await side.fleet.stats()).connected;
          const rss = median(readings.map((r) => r.rssBytes));
          const base = side === cpSide ? idle.cp : idle.bare;
          const heapUsed = median(readings.map((r) => r.heapUsedBytes));
          const heapCommitted = median(readings.map((r) => r.heapCommittedBytes));
          const newSpace = median(readings.map((r) => r.newSpaceCommittedBytes));
          memory[side.name] = { rss, perConnKiB: (rss - base) / Math.max(1, connected) / 1024, connected, heapUsed, heapCommitted, newSpace };
        }
        const cpMem = memory['control plane'] as Held;
        const bareMem = memory['bare aedes'] as Held;
        log(`held ${n}: control plane ${mib(cpMem.rss)} MiB (${cpMem.perConnKiB.toFixed(1)} KiB per connection), bare aedes ${mib(bareMem.rss)} MiB (${bareMem.perConnKiB.toFixed(1)} KiB)`);
        for (const [name, m] of Object.entries(memory)) log(`  ${name}: main thread's V8 heap ${mib(m.heapUsed)} MiB used of ${mib(m.heapCommitted)} MiB resident (new space ${mib(m.newSpace)} MiB)`);
        entry.memory = { controlPlaneRssMiB: mib(cpMem.rss), controlPlaneKiBPerConnection: round(cpMem.perConnKiB, 1), controlPlaneConnected: cpMem.connected, bareRssMiB: mib(bareMem.rss), bareKiBPerConnection: round(bareMem.perConnKiB, 1), bareConnected: bareMem.connected, controlPlaneHeapUsedMiB: mib(cpMem.heapUsed), controlPlaneHeapCommittedMiB: mib(cpMem.heapCommitted), controlPlaneNewSpaceMiB: mib(cpMem.newSpace) };

        // 2. Sustained ingest at each offered rate, rounds alternating A B B A.
        await cpSide.fleet.setTelemetry(null);
        await bareSide.fleet.setTelemetry(null);
        await drain(cpSide, log);
        await drain(bareSide, log);
        await settle(cpSide.server, log);
        const byRate: Record<string, { rounds: Record<string, Round[]>; ingestRatio: number }> = {};
        for (const rate of rates) {
          const load = { intervalMs: (n / rate) * 1000, shape };
          const rounds: Record<string, Round[]> = { 'control plane': [], 'bare aedes': [] };
          for (const side of [cpSide, bareSide, bareSide, cpSide]) {
            const r = await measureRound(side, load, seconds, log);
            (rounds[side.name] as Round[]).push(r);
            log(`${side.name}, ${n} devices, offered ${rate}/s: sent ${r.offeredPerSecond.toFixed(0)}/s, stored ${r.ingestedPerSecond.toFixed(0)}/s, p99 ${r.p99Ms.toFixed(0)} ms, server ${r.serverCores.toFixed(2)} cores`);
          }
          const cpRate = median(rounds['control plane']!.map((r) => r.ingestedPerSecond));
          const bareRate = median(rounds['bare aedes']!.map((r) => r.ingestedPerSecond));
          for (const side of [cpSide, bareSide]) {
            const rs = rounds[side.name] as Round[];
            const mem = memory[side.name] as Held;
            rows.push([
              String(n),
              side.name,
              String(mem.connected),
              mib(mem.rss).toFixed(0),
              mem.perConnKiB.toFixed(1),
              median(rs.map((r) => r.offeredPerSecond)).toFixed(0),
              median(rs.map((r) => r.ingestedPerSecond)).toFixed(0),
              side === cpSide ? (cpRate / bareRate).toFixed(2) : '1.00',
              median(rs.map((r) => r.p50Ms)).toFixed(0),
              median(rs.map((r) => r.p99Ms)).toFixed(0),
              median(rs.map((r) => r.serverCores)).toFixed(2),
            ]);
          }
          byRate[String(rate)] = { rounds, ingestRatio: round(cpRate / bareRate, 3) };
          // What the control plane took in but had not stored yet is stored before the next rate (or the storm) starts.
          await settle(cpSide.server, log);
        }
        entry.byRate = byRate;
        bySize[String(n)] = entry;
        await cpSide.fleet.setTelemetry(realistic);
        await bareSide.fleet.setTelemetry(realistic);
      }
      figures.bySize = bySize;

      // The bare side is done: its processes would only take CPU from the storm.
      await bareFleet.close();
      const bareStop = await bareServer.stop();
      if (bareStop.error !== null) notes.push(`the bare broker's process failed while stopping: ${bareStop.error}`);

      if (storm) {
        const result = await reconnectStorm(cpSide, largest, dir, retainedIndex, log);
        figures.reconnectStorm = result.figures;
        cpSide.server = result.server;
        running.servers.push(result.server);
        notes.push(result.note);
      }

      // Every window the fleet produced is stored once, across rounds and the restart.
      await cpSide.fleet.setTelemetry(null);
      const drained = await drain(cpSide, log);
      const a = await cpSide.server.audit([], false);
      const expected = drained.windowsProduced - drained.windowsDropped - drained.outboxPending;
      figures.windows = { produced: drained.windowsProduced, dropped: drained.windowsDropped, pending: drained.outboxPending, resent: drained.windowsResent, stored: a.telemetryRows, lost: expected - a.telemetryRows };
      notes.push(
        `windows: ${drained.windowsProduced} produced by the fleet over the whole run (${drained.windowsResent} sent again after a reconnect, ${drained.windowsDropped} dropped by full outboxes, ${drained.outboxPending} still unacknowledged), ` +
          `${a.telemetryRows} stored: ${a.telemetryRows === expected ? 'every acknowledged one, once' : `${expected - a.telemetryRows} acknowledged by the broker and NOT STORED`}`,
      );

      const top = bySize[String(largest)] as { memory: { controlPlaneRssMiB: number }; byRate: Record<string, { rounds: Record<string, Round[]>; ingestRatio: number }> };
      for (const rate of rates) {
        const at = top.byRate[String(rate)] as { rounds: Record<string, Round[]>; ingestRatio: number };
        const cpRounds = at.rounds['control plane'] as Round[];
        notes.push(
          `at ${largest} devices offered ${rate} windows/s: ${median(cpRounds.map((r) => r.ingestedPerSecond)).toFixed(0)}/s stored (goal >= 5000 when offered 5000), x${at.ingestRatio.toFixed(2)} the bare broker's delivery (goal >= 0.5), ` +
            `publish-to-commit p99 ${median(cpRounds.map((r) => r.p99Ms)).toFixed(0)} ms (goal <= 500)`,
        );
      }
      notes.push(`control plane RSS with ${largest} devices held: ${top.memory.controlPlaneRssMiB} MiB (goal <= 512 MB)`);
      notes.push(
        `each round: ${seconds} s measured after ${WARMUP_MS / 1000} s of warm-up, the other fleet silent; windows of ${cameras} camera(s) with ${shape.labels.length} labels at ${shape.fps} fps ` +
          `(class counts, confidence and latency histograms); latency from the window's windowEnd (set at publish) to its commit in SQLite (control plane) or its delivery to the counting subscriber (bare)`,
      );
      if (retainedIndex) notes.push('the bare aedes baseline indexed retained messages by topic, as the control plane does (PERCH_BENCH_FLEET_RETAINED_INDEX=1)');
      notes.push(`both servers run with the environment of deploy/systemd/perch-control-plane.service: ${JSON.stringify(unitEnvironment('perch-control-plane.service'))}`);
      notes.push(`simulators: ${processes} processes per fleet; RSS per connection = (RSS held - RSS idle) / devices, idle RSS ${mib(idle.cp)} MiB (control plane), ${mib(idle.bare)} MiB (bare)`);
    } finally {
      for (const f of running.fleets) await f.close().catch(() => undefined);
      for (const s of running.servers) {
        const stopped = await s.stop().catch(() => {
          s.kill();
          return null;
        });
        // A crash here (after the fleet has disconnected) is a finding like one at the storm's stop.
        if (stopped?.error) notes.push(`the ${s.opts.mode === 'bare' ? "bare broker's" : "control plane's"} process failed while stopping at the end of the run, after its fleet disconnected: ${stopped.error}`);
      }
      // PERCH_BENCH_FLEET_KEEP=1 keeps the servers' logs and data for a look after the run.
      if (process.env['PERCH_BENCH_FLEET_KEEP'] === '1') log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    }
    return {
      title: 'fleet-scale: simulated devices against the control plane and against aedes alone',
      table: { columns: ['devices', 'server', 'connected', 'RSS MiB', 'KiB / conn', 'offered /s', 'stored /s', 'vs bare', 'p50 ms', 'p99 ms', 'server cores'], rows },
      notes,
      figures,
    };
  },
};

/** One measured round: `side`'s fleet publishes `load`; what its server took in, how fast and how late. */
async function measureRound(side: Side, load: { intervalMs: number; shape: { cameras: number; labels: string[]; fps: number } }, seconds: number, log: (line: string) => void): Promise<Round> {
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
  await drain(side, log);
  // A round over the goal says where: the worst latency of each second, publish-to-commit and receive-to-commit
  // (a stall before the control plane received the windows shows in the first only).
  if (s1.latencyMs.p99 > 500) {
    log(`  ${side.name}: worst publish-to-commit by second (ms): ${s1.latencyMs.worstBySecond.join(' ')}`);
    if (s1.ingestLatencyMs) log(`  ${side.name}: worst receive-to-commit by second (ms): ${s1.ingestLatencyMs.worstBySecond.join(' ')}`);
  }
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

/** Waits until the fleet's outboxes are empty (its server has taken in every window), or gives up after DRAIN_TIMEOUT_MS and says so. */
async function drain(side: Side, log?: (line: string) => void) {
  const s = await side.fleet.until((f) => f.outboxPending === 0, `the ${side.name} fleet's outboxes to drain`, DRAIN_TIMEOUT_MS).catch(async (err: Error) => {
    log?.(`${err.message}; going on`);
    return side.fleet.stats();
  });
  await sleep(500);
  return s;
}

/**
 * Waits until the control plane has stored what it acknowledged: windows
 * PUBACKed by the broker can still wait in its queues and sockets after
 * the devices' outboxes are empty. Done when its stored count has not moved
 * for 2 s (at most 3 minutes).
 */
async function settle(server: FleetServer, log: (line: string) => void): Promise<void> {
  const end = performance.now() + 180_000;
  let last = -1;
  let still = 0;
  while (performance.now() < end && still < 2) {
    const w = (await server.stats()).windows;
    still = w === last ? still + 1 : 0;
    last = w;
    await sleep(1000);
  }
  if (still < 2) log('the control plane was still storing windows after 3 minutes; going on');
}

/**
 * Powers the fleet on up to `n` devices and waits until all are connected,
 * no more came in for NO_PROGRESS_MS, or the deadline passed; what it reached.
 */
async function rampUp(side: Side, n: number, connectRate: number, log: (line: string) => void) {
  const t0 = performance.now();
  await side.fleet.start(n);
  const deadline = t0 + Math.max(120_000, (3 * n * 1000) / connectRate);
  let best = 0;
  let bestAt = t0;
  let lastLog = t0;
  let s = await side.fleet.stats();
  while (s.connected < n && performance.now() < deadline && performance.now() - bestAt < NO_PROGRESS_MS) {
    await sleep(1000);
    s = await side.fleet.stats();
    if (s.connected > best) {
      best = s.connected;
      bestAt = performance.now();
    }
    if (performance.now() - lastLog > 15_000) {
      lastLog = performance.now();
      log(`${side.name}: ${s.connected} of ${n} connected after ${((lastLog - t0) / 1000).toFixed(0)} s (${s.connectErrors} failed connects so far)`);
    }
  }
  return { seconds: round((performance.now() - t0) / 1000, 2), connected: s.connected, connackFailures: s.connackFailures, connectErrors: s.connectErrors };
}

async function reconnectStorm(side: Side, n: number, dir: string, retainedIndex: boolean, log: (line: string) => void) {
  const before = await side.fleet.stats();
  const port = side.server.mqttPort;
  log(`reconnect storm: stopping the control plane with ${before.connected} devices connected`);
  const t0 = performance.now();
  // A stop that crashes the process is a finding, not the end of the benchmark: the data folder is still there.
  const stopped = await side.server.stop();
  const stopMs = stopped.ms;
  const stopError = stopped.error;
  if (stopError !== null) log(`the control plane process failed while stopping: ${stopError}`);
  await side.fleet.until((f) => f.connected === 0, 'every device to see the control plane gone', 60_000, 100);
  const server = await FleetServer.start({ mode: 'control-plane', dataDir: path.join(dir, 'cp'), port, logFile: path.join(dir, 'control-plane.log'), retainedIndex });
  const up = performance.now();
  log(`control plane back on port ${port} after ${((up - t0) / 1000).toFixed(1)} s`);
  let backAt: number | null = null;
  let atDeadline: number | null = null;
  let lastLog = up;
  let s = await side.fleet.stats();
  while (performance.now() - up < STORM_DEADLINE_MS * 2) {
    s = await side.fleet.stats();
    if (atDeadline === null && performance.now() - up >= STORM_DEADLINE_MS) atDeadline = s.connected;
    if (s.connected >= n) {
      backAt = performance.now();
      break;
    }
    if (performance.now() - lastLog > 15_000) {
      lastLog = performance.now();
      log(`reconnect storm: ${s.connected} of ${n} back after ${((lastLog - up) / 1000).toFixed(0)} s`);
    }
    await sleep(250);
  }
  const serverStats = await server.stats();
  const backS = backAt === null ? null : (backAt - up) / 1000;
  const failed = s.connackFailures - before.connackFailures;
  const refusedSubs = s.subscribeRefused - before.subscribeRefused;
  const notBackAtDeadline = n - (atDeadline ?? s.connected);
  log(`reconnect storm: ${s.connected} of ${n} back ${backS === null ? `after ${(STORM_DEADLINE_MS * 2) / 1000} s` : `in ${backS.toFixed(1)} s`}; ${failed} refused CONNACKs`);
  const figures = {
    devices: n,
    stopMs: round(stopMs, 0),
    stopError,
    downSeconds: round((up - t0) / 1000, 2),
    allBackSeconds: backS === null ? null : round(backS, 2),
    notBackAt60s: notBackAtDeadline,
    connackFailures: failed,
    subscribeRefused: refusedSubs,
    failedConnectAttempts: s.connectErrors - before.connectErrors,
    reconnects: s.reconnects - before.reconnects,
    controlPlaneClients: serverStats.connectedClients,
    rssAfterMiB: mib(serverStats.rssBytes),
  };
  const verdict = backS !== null && backS <= STORM_DEADLINE_MS / 1000 && failed === 0 && refusedSubs === 0 && stopError === null ? 'goal met' : 'GOAL MISSED';
  const note =
    `reconnect storm (${n} devices): the control plane ${stopError === null ? `stopped in ${(stopMs / 1000).toFixed(1)} s` : `CRASHED while stopping (${stopError})`} and listened again on the same data and port ${((up - t0) / 1000).toFixed(1)} s after the stop began; ` +
    `${backS === null ? `${s.connected} of ${n} back after ${(STORM_DEADLINE_MS * 2) / 1000} s` : `all back ${backS.toFixed(1)} s after that`}, ${notBackAtDeadline} not back at 60 s, ${failed} refused CONNACKs, ${refusedSubs} refused subscriptions, ` +
    `${figures.failedConnectAttempts} failed connect attempts (refused while down, timed out after; jittered backoff 500 ms doubling to 30 s): ${verdict} (all back within 60 s, none refused)`;
  return { server, figures, note };
}

const mib = (bytes: number): number => round(bytes / MiB, 1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
