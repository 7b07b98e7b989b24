/**
 * A fuzz campaign against a real control plane in its own process:
 * PERCH_BENCH_FUZZ_PAYLOADS (default 100,000) malformed, schema-invalid,
 * oversized and valid payloads of every device-to-cloud kind
 * (lib/payload-fuzzer.ts, seeded) published at QoS 1 through its embedded
 * broker from real device connections and a claimant, then packets over the
 * broker's socket-level cap. Checked afterwards:
 *
 * - no crash: the control plane process is still running and stores a
 *   valid window from a new device;
 * - every payload met the fate the contract gives it: the dispatcher
 *   handled exactly the accepted ones and dropped (with a log line each)
 *   exactly the refused ones, the broker dropped exactly the oversized
 *   ones, each packet over the cap closed its connection;
 * - SQLite holds exactly the accepted telemetry windows and events (by
 *   device and seq) and every stored row parses with its schema;
 * - Object.prototype in the control plane process is untouched.
 *
 * A failed check marks the run failed (exit code 1) after the table.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { claimantUsername, deviceTopic } from '@perch/shared';
import { PayloadLimits } from '../packages/control-plane/src/broker/payload-limits.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { FleetServer } from './lib/fleet-server.js';
import { FLEET_MODEL, TelemetryWindowFactory } from './lib/fleet-windows.js';
import { runFuzz } from './lib/fuzz-sender.js';
import { envNumber } from './lib/options.js';
import { FUZZ_KINDS, MUTATIONS } from './lib/payload-fuzzer.js';
import { cpuSeconds } from './lib/proc-stats.js';
import { round } from './lib/stats.js';

const MiB = 2 ** 20;
const CUTS = 20;

interface DispatchCounts {
  handled: number;
  dropped: number;
}

export const fuzzPayloads: Benchmark = {
  name: 'fuzz-payloads',
  async run(_options, log): Promise<BenchReport> {
    const total = envNumber('PERCH_BENCH_FUZZ_PAYLOADS', 100_000, { min: 100, max: 10_000_000, integer: true });
    const seed = envNumber('PERCH_BENCH_FUZZ_SEED', 1, { min: 0, max: 2 ** 31 - 1, integer: true });
    const connections = envNumber('PERCH_BENCH_FUZZ_CONNECTIONS', 8, { min: 1, max: 100, integer: true });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-fuzz-'));
    const server = await FleetServer.start({ mode: 'control-plane', dataDir: path.join(dir, 'cp'), logFile: path.join(dir, 'control-plane.log') });
    const rows: string[][] = [];
    const notes: string[] = [];
    const figures: Record<string, unknown> = { total, seed, connections };
    const checks: { what: string; ok: boolean; detail: string }[] = [];
    const check = (what: string, ok: boolean, detail: string) => checks.push({ what, ok, detail });
    try {
      const ids = Array.from({ length: connections }, (_, i) => `fuzz-${i}`);
      const passwords = await server.provision([...ids, 'fuzz-cutter', 'fuzz-probe']);
      const devices = ids.map((deviceId, i) => ({ deviceId, password: passwords[i] as string }));
      const before = await server.stats();
      const prototypeBefore = (await server.audit([], false)).prototypeKeys;
      const dispatchBefore = dispatchOf(before.controlPlane);
      const brokerBefore = brokerOf(before.controlPlane);
      const cpu0 = cpuSeconds(server.pid);
      log(`sending ${total} fuzzed payloads from ${connections} device connections and a claimant`);
      const r = await runFuzz({
        url: `mqtt://127.0.0.1:${server.mqttPort}`,
        devices,
        claimant: { deviceId: 'fuzz-claimant', username: claimantUsername(server.claimToken), password: server.claimToken },
        cutter: { deviceId: 'fuzz-cutter', password: passwords[connections] as string },
        total,
        seed,
        maxPacketBytes: new PayloadLimits().maxPacketBytes,
        cuts: CUTS,
        onProgress: (n) => {
          if (n % 20_000 === 0) log(`${n} sent`);
        },
      });
      log(`sent ${r.sent} payloads (${(r.bytes / MiB).toFixed(0)} MiB) in ${(r.wallMs / 1000).toFixed(1)} s`);

      // Wait for the control plane to have dispatched all of it (a crash ends the wait too).
      const end = Date.now() + 120_000;
      let after = await server.stats();
      while (server.running && Date.now() < end) {
        const d = dispatchOf(after.controlPlane);
        if (d.handled - dispatchBefore.handled + d.dropped - dispatchBefore.dropped >= r.expected.accepted + r.expected.refused) break;
        await sleep(250);
        after = await server.stats();
      }
      await sleep(500);
      after = await server.stats();
      const cpuS = cpuSeconds(server.pid) - cpu0;
      const d = dispatchOf(after.controlPlane);
      const b = brokerOf(after.controlPlane);
      const handled = d.handled - dispatchBefore.handled;
      const dropped = d.dropped - dispatchBefore.dropped;
      const oversize = b.oversizePublishes - brokerBefore.oversizePublishes;
      const cutPackets = b.oversizePackets - brokerBefore.oversizePackets;
      const logged = after.droppedLogLines - before.droppedLogLines;

      check('every payload acknowledged on connections that stayed up', r.acked === r.sent && r.unexpectedCloses === 0 && r.publishErrors === 0, `${r.acked} of ${r.sent} acknowledged, ${r.unexpectedCloses} connections closed, ${r.publishErrors} publish errors`);
      check('accepted payloads handled', handled === r.expected.accepted, `${handled} handled, ${r.expected.accepted} accepted by the contract`);
      check('refused payloads dropped, each with a log line', dropped === r.expected.refused && logged === r.expected.refused, `${dropped} dropped and ${logged} logged, ${r.expected.refused} refused by the contract`);
      check('oversized payloads dropped by the broker', oversize === r.expected.oversize, `${oversize} dropped, ${r.expected.oversize} over their topic's limit`);
      check('packets over the cap closed their connection', r.cuts.closed === CUTS && cutPackets === CUTS && r.cuts.reconnected, `${r.cuts.closed} of ${CUTS} closed (${cutPackets} counted by the broker), reconnected: ${r.cuts.reconnected}`);

      const audit = await server.audit([...ids, 'fuzz-claimant'], true);
      const sameKeys = (stored: string[], expected: Set<string>) => stored.length === expected.size && stored.every((k) => expected.has(k));
      check('stored telemetry windows = the accepted ones', sameKeys(audit.telemetryKeys, r.telemetryKeys), `${audit.telemetryKeys.length} stored, ${r.telemetryKeys.size} accepted (distinct device, seq)`);
      check('stored events = the accepted ones', sameKeys(audit.eventKeys, r.eventKeys), `${audit.eventKeys.length} stored, ${r.eventKeys.size} accepted`);
      check('no invalid row', audit.telemetryInvalid + audit.eventsInvalid + audit.reportedInvalid === 0, `${audit.telemetryInvalid} windows, ${audit.eventsInvalid} events, ${audit.reportedInvalid} reported states fail their schema`);
      check('Object.prototype untouched', JSON.stringify(audit.prototypeKeys) === JSON.stringify(prototypeBefore), audit.prototypeKeys.join(', '));
      const alive = server.running && (await probeWindow(server, passwords[connections + 1] as string));
      check('the control plane still runs and stores a valid window', alive, server.running ? `process ${server.pid} running` : `exited ${JSON.stringify(server.exited)}`);

      for (const kind of FUZZ_KINDS) {
        const k = r.byKind[kind];
        rows.push([kind, String(k.sent), String(k.accepted), String(k.refused), String(k.ignored), String(k.oversize)]);
      }
      rows.push(['all, as the contract says', String(r.sent), String(r.expected.accepted), String(r.expected.refused), String(r.expected.ignored), String(r.expected.oversize)]);
      rows.push(['all, as the control plane did', '', String(handled), String(dropped), '', String(oversize)]);
      notes.push(...checks.map((c) => `${c.ok ? 'ok' : 'FAILED'}: ${c.what} (${c.detail})`));
      notes.push(
        `by mutation (sent/accepted): ${MUTATIONS.map((m) => `${m} ${r.byMutation[m].sent}/${r.byMutation[m].accepted}`).join(', ')}`,
        `${r.sent} payloads, ${(r.bytes / MiB).toFixed(0)} MiB in ${(r.wallMs / 1000).toFixed(1)} s (${(r.sent / (r.wallMs / 1000)).toFixed(0)}/s, each connection paced under the broker's publish rate); ` +
          `control plane ${cpuS.toFixed(1)} CPU s, RSS ${(before.rssBytes / MiB).toFixed(0)} -> ${(after.rssBytes / MiB).toFixed(0)} MiB`,
      );
      Object.assign(figures, {
        sent: r.sent,
        bytes: r.bytes,
        wallMs: round(r.wallMs, 0),
        expected: r.expected,
        observed: { handled, dropped, oversize, cutPackets, logged },
        byKind: r.byKind,
        byMutation: r.byMutation,
        stored: { telemetry: audit.telemetryKeys.length, events: audit.eventKeys.length },
        controlPlaneCpuSeconds: round(cpuS, 1),
        rssMiB: { before: round(before.rssBytes / MiB, 1), after: round(after.rssBytes / MiB, 1) },
        checks,
        ok: checks.every((c) => c.ok),
      });
    } finally {
      await server.stop().catch(() => server.kill());
      await rm(dir, { recursive: true, force: true });
    }
    const ok = checks.length > 0 && checks.every((c) => c.ok);
    if (!ok) process.exitCode = 1;
    return {
      title: `fuzz-payloads: ${total} fuzzed device payloads against a control plane process${ok ? '' : ' (FAILED)'}`,
      table: { columns: ['kind', 'sent', 'accepted', 'refused', 'ignored (empty)', 'oversize'], rows },
      notes,
      figures,
    };
  },
};

function dispatchOf(cp: Record<string, unknown> | null): DispatchCounts {
  return (cp?.['dispatch'] as DispatchCounts | undefined) ?? { handled: 0, dropped: 0 };
}

function brokerOf(cp: Record<string, unknown> | null): { oversizePublishes: number; oversizePackets: number } {
  return (cp?.['broker'] as { oversizePublishes: number; oversizePackets: number } | undefined) ?? { oversizePublishes: 0, oversizePackets: 0 };
}

/** A new device publishes one valid window; true once the control plane has stored it. */
async function probeWindow(server: FleetServer, password: string): Promise<boolean> {
  const deviceId = 'fuzz-probe';
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.mqttPort}`, { clientId: deviceId, username: deviceId, password, reconnectPeriod: 0 });
  await client.publishAsync(deviceTopic(deviceId, 'telemetry'), new TelemetryWindowFactory({ cameras: 1, labels: ['cat', 'dog'], fps: 5 }, 10_000).encode(deviceId, 0, 0, Date.now(), FLEET_MODEL, 0), { qos: 1 });
  await client.endAsync();
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    if ((await server.audit([deviceId], false)).telemetryKeys.includes(`${deviceId}/0`)) return true;
    await sleep(200);
  }
  return false;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
