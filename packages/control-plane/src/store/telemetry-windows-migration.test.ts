import { describe, expect, it } from 'vitest';
import { telemetryWindow } from '../test-support/telemetry-windows.js';
import { upgradedDatabase } from '../test-support/upgraded-database.js';
import { TelemetryStore } from './telemetry-store.js';

describe('schema version 9: raw windows in arrival order', () => {
  it('keeps every window stored before it, still once per (device, seq), and answers the same queries', () => {
    upgradedDatabase(
      9,
      (old) => {
        const before = new TelemetryStore(old);
        for (const [device, seq, at] of [['b', 1, 30], ['a', 0, 10], ['a', 1, 20], ['b', 0, 5]] as const) {
          expect(before.insertWindow(telemetryWindow(device, seq, { start: seq * 10_000 }), at)).not.toBeNull();
        }
      },
      (db) => {
        const store = new TelemetryStore(db);
        expect(store.count()).toBe(4);
        expect(store.recent('a', 10).map((w) => [w.seq, w.receivedAt])).toEqual([[1, 20], [0, 10]]);
        // Rows now in arrival order; (device, seq) still unique.
        expect(db.prepare('SELECT device_id || seq FROM telemetry_windows ORDER BY rowid').pluck().all()).toEqual(['b0', 'a0', 'a1', 'b1']);
        expect(store.insertWindow(telemetryWindow('a', 1), 99)).toBeNull();
        expect(store.insertWindow(telemetryWindow('a', 2), 99)).toBe(5);
        expect(store.classTotals('a', 0)).toMatchObject({ windows: 3, classCounts: { cat: 18, dog: 9 } });
        expect(db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'telemetry_windows' AND type = 'index' ORDER BY name").pluck().all()).toEqual([
          'telemetry_windows_end',
          'telemetry_windows_key',
          'telemetry_windows_received',
        ]);
      },
    );
  });
});
