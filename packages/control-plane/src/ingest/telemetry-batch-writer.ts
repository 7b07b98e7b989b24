import type { TelemetryWindow } from '@perch/shared';
import type { GapDetector } from '../telemetry/gap-detector.js';
import { writeTransaction, type Db } from '../store/database.js';
import type { DevicePresenceStore } from '../store/device-presence-store.js';
import { RollupBatch, type TelemetryRollups } from '../store/telemetry-rollups.js';
import type { TelemetryStore } from '../store/telemetry-store.js';

export interface PendingWindow {
  window: TelemetryWindow;
  /** when the control plane received it (ms) */
  receivedAt: number;
  /** called once it is committed (no argument) or will not be (an error): the embedded broker acknowledges the device then */
  done?: ((err?: Error) => void) | undefined;
  /** the window as JSON when the caller has it already (the writer thread receives windows so) */
  json?: string;
}

export interface BatchResult {
  /** windows stored for the first time (late ones included) */
  inserted: number;
  duplicates: number;
  /** windows that filled a gap */
  late: number;
  /** seqs newly found missing */
  missingOpened: number;
  devices: number;
}

/**
 * Writes one batch of windows in one transaction: raw windows, sequence
 * gaps, minute and hour rollups and each device's last seen. Everything a
 * window changes commits with it or not at all, so a redelivered window is a
 * no-op everywhere. Statements per batch: one insert per window (and its
 * class counts), per device one sequence read and write and one last-seen
 * update, one upsert per (device, bucket) and resolution.
 */
export class TelemetryBatchWriter {
  private readonly tx;

  constructor(
    db: Db,
    private readonly windows: TelemetryStore,
    private readonly gaps: GapDetector,
    private readonly rollups: TelemetryRollups,
    private readonly presence: DevicePresenceStore,
  ) {
    this.tx = writeTransaction(db, (byDevice: Map<string, PendingWindow[]>) => this.writeAll(byDevice));
  }

  write(batch: readonly PendingWindow[]): BatchResult {
    const byDevice = new Map<string, PendingWindow[]>();
    for (const p of batch) {
      const list = byDevice.get(p.window.deviceId);
      if (list) list.push(p);
      else byDevice.set(p.window.deviceId, [p]);
    }
    try {
      return this.tx(byDevice);
    } catch (err) {
      this.gaps.forget();
      this.rollups.forget();
      throw err;
    }
  }

  private writeAll(byDevice: Map<string, PendingWindow[]>): BatchResult {
    const result: BatchResult = { inserted: 0, duplicates: 0, late: 0, missingOpened: 0, devices: byDevice.size };
    const rollup = new RollupBatch();
    for (const [deviceId, list] of byDevice) {
      // In seq order, so windows reordered within one batch open no gap.
      list.sort((a, b) => a.window.seq - b.window.seq);
      const seq = this.gaps.begin(deviceId);
      let lastAt = 0;
      for (const { window, receivedAt, json } of list) {
        lastAt = Math.max(lastAt, receivedAt);
        const verdict = seq.admit(window.seq, receivedAt, () => this.windows.insertWindow(window, receivedAt, json));
        if (verdict === 'duplicate') {
          result.duplicates++;
          continue;
        }
        result.inserted++;
        rollup.add(deviceId, window);
      }
      seq.finish(lastAt);
      result.late += seq.late;
      result.missingOpened += seq.opened;
      this.presence.markSeen(deviceId, lastAt);
    }
    this.rollups.write(rollup);
    return result;
  }
}
