import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { createLogger } from '../logger.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { GapDetector } from './gap-detector.js';
import { RetentionJob, type RetentionOptions } from './retention.js';

const DAY = 86_400_000;
const NOW = 1_000 * DAY;
const log = createLogger('silent');

let t: ReturnType<typeof tempDatabase>;
let writer: TelemetryBatchWriter;

const count = (table: string) => t.db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
const policy = (over: Partial<RetentionOptions> = {}): RetentionOptions => ({
  rawWindowsDays: 7,
  minuteRollupsDays: 14,
  hourRollupsDays: 400,
  eventsDays: 30,
  auditDays: 365,
  intervalMs: 60_000,
  batchRows: 3,
  ...over,
});

/** One window per device per day at `ageDays` days before NOW (device clock and receive time agree). */
function windowsAged(device: string, ages: number[]) {
  writer.write(ages.map((age, i) => ({ window: telemetryWindow(device, i, { start: NOW - age * DAY }), receivedAt: NOW - age * DAY + 10_000 })));
  writer.flushState();
}

function eventAged(device: string, seq: number, ageDays: number) {
  t.db
    .prepare("INSERT INTO detection_events (device_id, seq, event_id, kind, camera_id, label, at, payload_json) VALUES (?, ?, ?, 'detection', 'cam', 'cat', ?, '{}')")
    .run(device, seq, `e${seq}`, NOW - ageDays * DAY);
}

beforeEach(() => {
  t = tempDatabase();
  writer = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), new TelemetryRollups(t.db), new DevicePresenceStore(t.db));
});

afterEach(() => t.close());

describe('retention', () => {
  it('deletes each kind past its own age, in batches of at most batchRows', async () => {
    // Ages in days; seq = index. Windows older than 7 days go, minute rollups older than 14, hour rollups older than 400.
    windowsAged('a', [500, 300, 20, 10, 8, 6, 1, 0.5]);
    windowsAged('b', [9, 2]);
    for (const [seq, age] of [[0, 40], [1, 31], [2, 29], [3, 1]] as const) eventAged('a', seq, age);
    // A gap detected 20 days ago (with the raw windows it describes) and one detected now.
    writer.write([{ window: telemetryWindow('g', 5, { start: NOW - 20 * DAY }), receivedAt: NOW - 20 * DAY }]);
    writer.write([{ window: telemetryWindow('g', 9, { start: NOW }), receivedAt: NOW }]);
    writer.flushState();

    const job = new RetentionJob(t.db, policy(), log);
    const deleted = await job.run(NOW);

    expect(deleted).toEqual({ windows: 5 + 1 + 1, minuteRollups: 3 + 1, hourRollups: 1, events: 2, gaps: 1, audit: 0 });
    const seqs = (d: string) => t.db.prepare('SELECT seq FROM telemetry_windows WHERE device_id = ? ORDER BY seq').pluck().all(d);
    expect(seqs('a')).toEqual([5, 6, 7]);
    expect(seqs('b')).toEqual([1]);
    expect(seqs('g')).toEqual([9]);
    expect(t.db.prepare('SELECT seq FROM detection_events ORDER BY seq').pluck().all()).toEqual([2, 3]);
    expect(t.db.prepare('SELECT first_seq FROM telemetry_gaps').pluck().all()).toEqual([6]);
    // Batches of at most 3 rows, each kind until one comes back short: windows 3+3+1, minute rollups 3+1, the rest one each.
    expect(job.stats.batches).toBe(3 + 2 + 1 + 1 + 1 + 1);

    // A second pass finds nothing more.
    expect(await job.run(NOW)).toEqual({ windows: 0, minuteRollups: 0, hourRollups: 0, events: 0, gaps: 0, audit: 0 });
  });

  it('keeps forever what has no retention (null)', async () => {
    windowsAged('a', [900, 1]);
    eventAged('a', 0, 900);
    const job = new RetentionJob(t.db, policy({ rawWindowsDays: null, minuteRollupsDays: null, hourRollupsDays: null, eventsDays: null }), log);
    expect(await job.run(NOW)).toEqual({ windows: 0, minuteRollups: 0, hourRollups: 0, events: 0, gaps: 0, audit: 0 });
    expect(count('telemetry_windows')).toBe(2);
  });

  it('lets ingest commit between its batches', async () => {
    windowsAged('old', Array.from({ length: 12 }, () => 30));
    const job = new RetentionJob(t.db, policy(), log);
    const running = job.run(NOW);
    // The pass has deleted its first batch synchronously and now waits for a turn of the event loop.
    const seenAt: { batches: number; oldLeft: number }[] = [];
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        writer.write([{ window: telemetryWindow('live', 0, { start: NOW }), receivedAt: NOW }]);
        seenAt.push({ batches: job.stats.batches, oldLeft: t.db.prepare("SELECT COUNT(*) FROM telemetry_windows WHERE device_id = 'old'").pluck().get() as number });
        resolve();
      }),
    );
    await running;
    expect(seenAt[0]!.oldLeft).toBeGreaterThan(0);
    expect(seenAt[0]!.oldLeft).toBeLessThan(12);
    expect(count('telemetry_windows')).toBe(1);
    expect(t.db.prepare('SELECT device_id FROM telemetry_windows').pluck().get()).toBe('live');
  });

  it('joins a pass already running and stops between batches', async () => {
    windowsAged('old', Array.from({ length: 12 }, () => 30));
    const job = new RetentionJob(t.db, policy(), log);
    const first = job.run(NOW);
    expect(job.run(NOW)).toBe(first);
    await job.stop();
    await first;
    // Stopped after its first batch: the rest waits for the next start.
    expect(count('telemetry_windows')).toBe(12 - 3);
  });
});
