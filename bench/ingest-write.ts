/**
 * The control plane's telemetry write path alone, in this process: windows
 * as a fleet sends them (bench/lib/fleet-windows.ts), decoded with the
 * contract's schema and written by the real TelemetryBatchWriter, as the
 * writer thread does (`writeReceived`: bytes in), into a real
 * SQLite file (raw window and gaps, 500 a transaction; minute and hour
 * rollups, sequences and last seen written behind them). Baseline in the same run: the least a store
 * could do with the same windows: JSON.parse and one INSERT of the bytes
 * into a one-table database, 500 a transaction. Also the WAL written per
 * window (with checkpoints off for that pass), the figure that the
 * arrival-ordered window table brought from 13.8 to 3.9 KiB.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { TelemetryBatchWriter } from '../packages/control-plane/src/ingest/telemetry-batch-writer.js';
import { openDatabase } from '../packages/control-plane/src/store/database.js';
import { DevicePresenceStore } from '../packages/control-plane/src/store/device-presence-store.js';
import { TelemetryRollups } from '../packages/control-plane/src/store/telemetry-rollups.js';
import { TelemetryStore } from '../packages/control-plane/src/store/telemetry-store.js';
import { GapDetector } from '../packages/control-plane/src/telemetry/gap-detector.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { DEFAULT_WINDOW_SHAPE, FLEET_MODEL, TelemetryWindowFactory } from './lib/fleet-windows.js';
import { envNumber } from './lib/options.js';
import { round } from './lib/stats.js';

const BATCH = 500;
/**
 * The rollups, sequences and last seen are written behind the windows every 5 s (the default): at the
 * 5,000 windows/s goal, every 25,000 windows. Timed with the windows, and once more at the end.
 */
const STATE_EVERY = 25_000;
/** Windows ten seconds apart per device, as agents send them by default. */
const WINDOW_MS = 10_000;

interface Pass {
  perSecond: number;
  cpuUsPerWindow: number;
}

/** `count` windows of `devices` devices, round robin, in the order a fleet would send them. */
function fleetWindows(devices: number, count: number): Buffer[] {
  const factory = new TelemetryWindowFactory(DEFAULT_WINDOW_SHAPE, WINDOW_MS);
  const ids = Array.from({ length: devices }, (_, i) => `fleet-${String(i).padStart(6, '0')}`);
  const start = 1_800_000_000_000;
  return Array.from({ length: count }, (_, n) => {
    const d = n % devices;
    const seq = Math.floor(n / devices);
    return factory.encode(ids[d] as string, seq, d, start + seq * WINDOW_MS + d, FLEET_MODEL, 0);
  });
}

function timed(total: number, run: () => void): Pass {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  run();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { perSecond: (total / ms) * 1000, cpuUsPerWindow: (c.user + c.system) / total };
}

/** The Perch pass; `walBytes`: the WAL file's size at the end, before closing (which checkpoints it away). */
function perchPass(file: string, payloads: Buffer[], checkpoints: boolean): Pass & { walBytes: number } {
  const db = openDatabase(file);
  try {
    if (!checkpoints) db.pragma('wal_autocheckpoint = 0');
    const writer = new TelemetryBatchWriter(db, new TelemetryStore(db), new GapDetector(db, 600_000), new TelemetryRollups(db), new DevicePresenceStore(db));
    // As the writer thread gets them: the bytes as received, with the topic's device and the arrival time.
    const received = payloads.map((payload) => {
      const head = JSON.parse(payload.toString('utf8')) as { deviceId: string; windowEnd: number };
      return { deviceId: head.deviceId, payload, receivedAt: head.windowEnd };
    });
    const pass = timed(payloads.length, () => {
      for (let i = 0; i < received.length; i += BATCH) {
        const result = writer.writeReceived(received.slice(i, i + BATCH));
        if (result.rejected.length > 0) throw new Error(`a fleet window does not decode: ${result.rejected[0]?.reason}`);
        if ((i + BATCH) % STATE_EVERY === 0) writer.flushState();
      }
      writer.flushState();
    });
    return { ...pass, walBytes: statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0 };
  } finally {
    db.close();
  }
}

function barePass(file: string, payloads: Buffer[]): Pass {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE w (device_id TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO w VALUES (?, ?, ?)');
    const tx = db.transaction((list: Buffer[]) => {
      for (const p of list) {
        const text = p.toString('utf8');
        const v = JSON.parse(text) as { deviceId: string; seq: number };
        insert.run(v.deviceId, v.seq, text);
      }
    });
    return timed(payloads.length, () => {
      for (let i = 0; i < payloads.length; i += BATCH) tx(payloads.slice(i, i + BATCH));
    });
  } finally {
    db.close();
  }
}

export const ingestWrite: Benchmark = {
  name: 'ingest-write',
  async run(_options, log): Promise<BenchReport> {
    const windows = envNumber('PERCH_BENCH_INGEST_WINDOWS', 60_000, { min: 1000, max: 10_000_000, integer: true });
    const rows: string[][] = [];
    const figures: Record<string, unknown> = { windows, batch: BATCH };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'perch-ingest-write-'));
    try {
      for (const devices of [1000, 10_000]) {
        const payloads = fleetWindows(devices, windows);
        // Alternating B A A B, each pass on a fresh file, so a slow patch of the machine hits both.
        const perch: Pass[] = [];
        const bare: Pass[] = [];
        for (const [k, side] of (['bare', 'perch', 'perch', 'bare'] as const).entries()) {
          const file = path.join(dir, `${side}-${devices}-${k}.db`);
          const pass = side === 'perch' ? perchPass(file, payloads, true) : barePass(file, payloads);
          (side === 'perch' ? perch : bare).push(pass);
          log(`${devices} devices, ${side}: ${pass.perSecond.toFixed(0)} windows/s, ${pass.cpuUsPerWindow.toFixed(1)} µs of CPU a window`);
        }
        // WAL per window: a shorter pass with checkpoints off, so the WAL file holds everything written.
        const walFile = path.join(dir, `wal-${devices}.db`);
        const walWindows = Math.min(windows, 20_000);
        const walBytes = perchPass(walFile, payloads.slice(0, walWindows), false).walBytes;
        const best = (ps: Pass[]) => ps.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
        const p = best(perch);
        const b = best(bare);
        const ratio = p.perSecond / b.perSecond;
        rows.push([String(devices), p.perSecond.toFixed(0), p.cpuUsPerWindow.toFixed(1), b.perSecond.toFixed(0), b.cpuUsPerWindow.toFixed(1), ratio.toFixed(2), (walBytes / 1024 / walWindows).toFixed(2)]);
        figures[String(devices)] = { perch, bare, ratio: round(ratio, 3), walKiBPerWindow: round(walBytes / 1024 / walWindows, 2) };
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return {
      title: 'ingest-write: the telemetry write path alone, against parse-and-insert into one table',
      table: { columns: ['devices', 'Perch windows/s', 'µs CPU', 'bare windows/s', 'µs CPU', 'Perch ÷ bare', 'WAL KiB / window'], rows },
      notes: [
        `${windows} windows of one camera each, round robin over the devices, ${BATCH} a transaction; best of two passes each, alternating`,
        `Perch: decode with the contract schema, then the batch writer (window and gaps), and every ${STATE_EVERY} windows the minute and hour rollups, sequences and last seen they changed; bare: JSON.parse and one INSERT of the bytes`,
      ],
      figures,
    };
  },
};
