import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { upgradedDatabase } from '../test-support/upgraded-database.js';
import { GapDetector } from './gap-detector.js';

const GRACE_MS = 60_000;
let t: ReturnType<typeof tempDatabase>;
let gaps: GapDetector;
let writer: TelemetryBatchWriter;

/** Writes one batch of these seqs for `device`, all received at `at`, and the highest seq with it (written behind the windows otherwise). */
function send(device: string, seqs: number[], at = 1_000_000) {
  const result = writer.write(seqs.map((seq) => ({ window: telemetryWindow(device, seq), receivedAt: at })));
  writer.flushState();
  return result;
}

const ranges = (device: string, now = 1_000_000) => gaps.report(device, now).ranges.map((r) => [r.firstSeq, r.lastSeq]);
const storedSeqs = (device: string) =>
  (t.db.prepare('SELECT seq FROM telemetry_windows WHERE device_id = ? ORDER BY seq').pluck().all(device) as number[]);

beforeEach(() => {
  t = tempDatabase();
  gaps = new GapDetector(t.db, GRACE_MS);
  writer = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), gaps, new TelemetryRollups(t.db), new DevicePresenceStore(t.db));
});

afterEach(() => t.close());

describe('gap detection', () => {
  it('finds a skipped range, fills it with late windows and counts duplicates', () => {
    expect(send('d1', [0, 1, 2, 5, 6])).toMatchObject({ inserted: 5, duplicates: 0, missingOpened: 2, late: 0 });
    expect(ranges('d1')).toEqual([[3, 4]]);
    expect(gaps.report('d1', 1_000_000)).toMatchObject({ highestSeq: 6, contiguousSeq: 2, missing: 2, pending: 2, confirmedLost: 0, truncated: false });

    // A redelivered window changes nothing; a late one closes its part of the gap.
    expect(send('d1', [5, 3])).toMatchObject({ inserted: 1, duplicates: 1, late: 1, missingOpened: 0 });
    expect(ranges('d1')).toEqual([[4, 4]]);
    expect(gaps.report('d1', 1_000_000).contiguousSeq).toBe(3);

    expect(send('d1', [4])).toMatchObject({ inserted: 1, late: 1 });
    expect(gaps.report('d1', 1_000_000)).toMatchObject({ highestSeq: 6, contiguousSeq: 6, missing: 0, ranges: [] });
    expect(storedSeqs('d1')).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('counts from seq 0: a first window at seq 3 means 0-2 are missing', () => {
    send('d2', [3]);
    expect(gaps.report('d2', 1_000_000)).toMatchObject({ highestSeq: 3, contiguousSeq: null, missing: 3, ranges: [{ firstSeq: 0, lastSeq: 2, count: 3 }] });
    expect(gaps.report('never-seen', 1_000_000)).toMatchObject({ highestSeq: null, contiguousSeq: null, missing: 0, ranges: [] });
  });

  it('splits a gap around a late window, keeping when it was detected', () => {
    send('d3', [9], 1_000);
    send('d3', [21], 5_000);
    expect(ranges('d3')).toEqual([[10, 20], [0, 8]]);
    send('d3', [15], 9_000);
    const r = gaps.report('d3', 9_000);
    expect(r.ranges).toEqual([
      { firstSeq: 16, lastSeq: 20, count: 5, detectedAt: 5_000, confirmedLost: false },
      { firstSeq: 10, lastSeq: 14, count: 5, detectedAt: 5_000, confirmedLost: false },
      { firstSeq: 0, lastSeq: 8, count: 9, detectedAt: 1_000, confirmedLost: false },
    ]);
    expect(r.missing).toBe(19);
    // Gap ends are closed one at a time too.
    send('d3', [16, 14, 10]);
    expect(ranges('d3')).toEqual([[17, 20], [11, 13], [0, 8]]);
  });

  it('opens no gap for windows reordered within one batch', () => {
    send('d4', [0, 1]);
    expect(send('d4', [4, 2, 3])).toMatchObject({ inserted: 3, missingOpened: 0, late: 0 });
    expect(gaps.report('d4', 0)).toMatchObject({ highestSeq: 4, missing: 0 });
  });

  it('reports a gap older than the grace period as confirmed lost', () => {
    send('d5', [0, 4], 100_000);
    send('d5', [10], 130_000);
    const at = (now: number) => gaps.report('d5', now);
    expect(at(100_000 + GRACE_MS - 1)).toMatchObject({ missing: 8, pending: 8, confirmedLost: 0 });
    expect(at(100_000 + GRACE_MS)).toMatchObject({ missing: 8, pending: 5, confirmedLost: 3 });
    expect(at(130_000 + GRACE_MS).ranges.map((r) => r.confirmedLost)).toEqual([true, true]);
    expect(gaps.totals(130_000 + GRACE_MS)).toEqual({ devicesWithGaps: 1, missing: 8, confirmedLost: 8 });
  });

  it('stays idempotent after retention deleted the raw window: a replay is a duplicate, not a second count', () => {
    send('d6', [0, 1, 2]);
    t.db.prepare("DELETE FROM telemetry_windows WHERE device_id = 'd6' AND seq = 1").run();
    expect(send('d6', [1])).toMatchObject({ inserted: 0, duplicates: 1 });
    expect(storedSeqs('d6')).toEqual([0, 2]);
    const windows = t.db.prepare("SELECT SUM(windows) FROM telemetry_rollups_hour WHERE device_id = 'd6'").pluck().get();
    expect(windows).toBe(3);
  });

  it('learns nothing from a rolled-back batch', () => {
    // A real failure in the middle of a batch: the second device's insert aborts the transaction.
    t.db.exec("CREATE TEMP TRIGGER refuse AFTER INSERT ON telemetry_windows WHEN NEW.device_id = 'zz' BEGIN SELECT RAISE(ABORT, 'refused'); END");
    const batch = [0, 1, 2].map((seq) => ({ window: telemetryWindow('a', seq), receivedAt: 1 })).concat([{ window: telemetryWindow('zz', 0), receivedAt: 1 }]);
    expect(() => writer.write(batch)).toThrow(/refused/);
    expect(storedSeqs('a')).toEqual([]);
    t.db.exec('DROP TRIGGER refuse');
    expect(writer.write(batch)).toMatchObject({ inserted: 4, duplicates: 0, missingOpened: 0 });
    writer.flushState();
    expect(gaps.report('a', 0)).toMatchObject({ highestSeq: 2, missing: 0 });
  });

  it('truncates the ranges listed, not the totals', () => {
    send('d7', [1, 3, 5, 7]);
    const r = gaps.report('d7', 0, 2);
    expect(r.ranges.map((g) => g.firstSeq)).toEqual([6, 4]);
    expect(r).toMatchObject({ truncated: true, missing: 4 });
  });
});

describe('schema version 5 on a database with telemetry', () => {
  it('backfills sequences and gaps from the windows stored before it', () => {
    upgradedDatabase(
      5,
      (old) => {
        const insert = old.prepare(
          "INSERT INTO telemetry_windows (device_id, seq, window_start, window_end, frames_inferred, payload_json, received_at) VALUES (?, ?, 0, 0, 0, '{}', ?)",
        );
        for (const [seq, at] of [[0, 10], [1, 11], [4, 14], [5, 15], [9, 19]] as const) insert.run('old', seq, at);
      },
      (db) => {
        const g = new GapDetector(db, GRACE_MS);
        expect(g.report('old', 19)).toMatchObject({
          highestSeq: 9,
          contiguousSeq: 1,
          missing: 5,
          ranges: [
            { firstSeq: 6, lastSeq: 8, detectedAt: 19 },
            { firstSeq: 2, lastSeq: 3, detectedAt: 14 },
          ],
        });
      },
    );
  });
});
