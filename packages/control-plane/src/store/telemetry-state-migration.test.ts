import { describe, expect, it } from 'vitest';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { telemetryWindow } from '../test-support/telemetry-windows.js';
import { upgradedDatabase } from '../test-support/upgraded-database.js';
import { DevicePresenceStore } from './device-presence-store.js';
import { TelemetryRollups } from './telemetry-rollups.js';
import { TelemetryStore } from './telemetry-store.js';

describe('schema version 11: rollups keyed by bucket, written behind the windows', () => {
  it('keeps the rollups stored before it, counts none of the windows again, and adds to them after', () => {
    upgradedDatabase(
      11,
      (old) => {
        const write = old.prepare(
          `INSERT INTO telemetry_rollups_minute (device_id, bucket_start, windows, frames_received, frames_inferred, frames_dropped, inference_errors, class_counts_json, latency_json, shadow_compared, shadow_agreed)
           VALUES (?, ?, ?, 0, ?, 0, 0, '{"cat":2}', '{}', 0, 0)`,
        );
        write.run('a', 60_000, 2, 18);
        write.run('b', 0, 1, 9);
        const store = new TelemetryStore(old);
        store.insertWindow(telemetryWindow('a', 0, { start: 60_000 }), 70_000);
        store.insertWindow(telemetryWindow('a', 1, { start: 70_000 }), 80_000);
      },
      (db) => {
        expect(db.prepare('SELECT through_rowid FROM telemetry_state_watermark').pluck().get()).toBe(2);
        const rollups = new TelemetryRollups(db);
        const writer = new TelemetryBatchWriter(db, new TelemetryStore(db), new GapDetector(db, 60_000), rollups, new DevicePresenceStore(db));
        // The windows stored before are in the old rollups already: not counted again at start.
        expect(rollups.forDevice('a', 'minute', 0, 1e9).map((r) => [r.bucketStart, r.windows, r.framesInferred])).toEqual([[60_000, 2, 18]]);
        expect(rollups.forDevice('b', 'minute', 0, 1e9).map((r) => r.windows)).toEqual([1]);
        writer.write([{ window: telemetryWindow('a', 2, { start: 80_000 }), receivedAt: 90_000 }]);
        writer.flushState();
        expect(rollups.forDevice('a', 'minute', 0, 1e9)).toMatchObject([{ bucketStart: 60_000, windows: 3, framesInferred: 27, classCounts: { cat: 2 + 6, dog: 3 } }]);
        expect(db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'telemetry_rollups_minute' AND type = 'index' AND sql IS NOT NULL").pluck().all()).toEqual([
          'telemetry_rollups_minute_device',
        ]);
      },
    );
  });
});
