import type { TelemetryWindow } from '@perch/shared';
import type { GapDetector } from '../telemetry/gap-detector.js';
import { writeTransaction, type Db } from '../store/database.js';
import type { DevicePresenceStore } from '../store/device-presence-store.js';
import { RollupBatch, type TelemetryRollups } from '../store/telemetry-rollups.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import { DEFERRED_STATE_DEFAULTS, DeferredTelemetryState, type BatchChanges, type DeferredStateOptions, type StateLog } from './deferred-telemetry-state.js';
import { decodeReceived, type ReceivedWindow, type RejectedWindow } from './received-telemetry.js';

/** A decoded window to write. */
export interface PendingWindow {
  window: TelemetryWindow;
  /** when the control plane received it (ms) */
  receivedAt: number;
  /** the window as JSON when the caller has it already (decodeReceived makes it) */
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
  /** windows of the batch given to writeReceived that did not decode (not written) */
  rejected: RejectedWindow[];
}

/**
 * Writes one batch of windows in one transaction: the raw windows and their
 * sequence gaps, so a redelivered window is a no-op. Statements per batch:
 * one insert per window, a gap row where a seq is skipped or filled. What
 * the windows add to the rollups, highest seqs and last seen is counted in
 * memory once the batch has committed and written behind it
 * (DeferredTelemetryState).
 */
export class TelemetryBatchWriter {
  private readonly tx;
  private readonly state: DeferredTelemetryState;

  constructor(
    db: Db,
    private readonly windows: TelemetryStore,
    private readonly gaps: GapDetector,
    rollups: TelemetryRollups,
    presence: DevicePresenceStore,
    stateOptions: DeferredStateOptions = DEFERRED_STATE_DEFAULTS,
    log?: StateLog,
  ) {
    this.state = new DeferredTelemetryState(db, gaps, rollups, presence, stateOptions, log);
    this.tx = writeTransaction(db, (byDevice: Map<string, PendingWindow[]>) => this.writeAll(byDevice));
  }

  /** Decodes the windows as received, then writes those that decode; the others come back in `rejected`. */
  writeReceived(batch: readonly ReceivedWindow[]): BatchResult {
    const { windows, rejected } = decodeReceived(batch);
    return { ...this.write(windows), rejected };
  }

  write(batch: readonly PendingWindow[]): BatchResult {
    const byDevice = new Map<string, PendingWindow[]>();
    for (const p of batch) {
      const list = byDevice.get(p.window.deviceId);
      if (list) list.push(p);
      else byDevice.set(p.window.deviceId, [p]);
    }
    const { result, changes } = this.tx(byDevice);
    this.state.apply(changes);
    return result;
  }

  /** Writes the rollups, sequences and last seen of every committed window now. */
  flushState(): void {
    this.state.flushAll();
  }

  async close(): Promise<void> {
    this.state.stop();
  }

  private writeAll(byDevice: Map<string, PendingWindow[]>): { result: BatchResult; changes: BatchChanges } {
    const result: BatchResult = { inserted: 0, duplicates: 0, late: 0, missingOpened: 0, devices: byDevice.size, rejected: [] };
    const changes: BatchChanges = { devices: new Map(), rollup: new RollupBatch(), lastRowid: 0 };
    for (const [deviceId, list] of byDevice) {
      // In seq order, so windows reordered within one batch open no gap.
      list.sort((a, b) => a.window.seq - b.window.seq);
      const seq = this.gaps.begin(deviceId);
      let lastSeen = 0;
      for (const { window, receivedAt, json } of list) {
        lastSeen = Math.max(lastSeen, receivedAt);
        let rowid = 0;
        const verdict = seq.admit(window.seq, receivedAt, () => {
          rowid = this.windows.insertWindow(window, receivedAt, json) ?? 0;
          return rowid > 0;
        });
        if (verdict === 'duplicate') {
          result.duplicates++;
          continue;
        }
        result.inserted++;
        changes.rollup.add(deviceId, window, rowid);
        changes.lastRowid = Math.max(changes.lastRowid, rowid);
      }
      result.late += seq.late;
      result.missingOpened += seq.opened;
      changes.devices.set(deviceId, { highest: seq.newHighest(), lastSeen });
    }
    return { result, changes };
  }
}
