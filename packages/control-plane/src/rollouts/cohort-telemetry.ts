import type { TelemetryWindow } from '@perch/shared';
import type { Db } from '../store/database.js';
import { addShadow, addWindow, emptyCohortStats, emptyShadowStats, mergeCohortStats, mergeShadowStats, toBaseline, type BaselineStats, type CohortStats, type ShadowStats } from './cohort-stats.js';

/** What a phase of a stage has seen so far. */
export interface PhaseEvidence {
  /** windows of rollout devices running the candidate */
  canary: CohortStats;
  /** shadow sections of rollout devices whose challenger is the candidate */
  shadow: ShadowStats;
  /** windows of target devices not in the rollout (yet): the control cohort, same time span */
  control: CohortStats;
}

export interface Membership {
  candidateSha256: string;
  inRollout(deviceId: string): boolean;
  inControl(deviceId: string): boolean;
}

/**
 * Windows received within this long may still be in an ingest batch not yet
 * committed: they are read again on every call, never added for good.
 */
const SETTLE_MS = 5_000;

/** Windows of a device's previous model taken as its baseline, newest first. */
const BASELINE_MAX_WINDOWS = 360;

/**
 * Reads a phase's evidence from the raw windows incrementally: windows
 * received more than SETTLE_MS ago are added once to running totals, the
 * rest are read afresh each time. By the control plane's receive time
 * (its own clock, whatever the devices' clocks say), through the
 * `received_at` index; a reader made after a restart reads the phase from
 * its start once.
 */
export class PhaseTelemetryReader {
  private settled: PhaseEvidence = { canary: emptyCohortStats(), shadow: emptyShadowStats(), control: emptyCohortStats() };
  private settledTo: number;
  private readonly rangeStmt;

  constructor(
    db: Db,
    /** the phase's start, by the control plane's clock */
    readonly from: number,
  ) {
    this.settledTo = from;
    this.rangeStmt = db.prepare('SELECT device_id, model_sha256, payload_json FROM telemetry_windows WHERE received_at >= ? AND received_at < ?');
  }

  read(now: number, members: Membership): PhaseEvidence {
    const settleTo = Math.max(this.settledTo, now - SETTLE_MS);
    if (settleTo > this.settledTo) {
      this.addRange(this.settled, this.settledTo, settleTo, members);
      this.settledTo = settleTo;
    }
    const fresh: PhaseEvidence = { canary: emptyCohortStats(), shadow: emptyShadowStats(), control: emptyCohortStats() };
    this.addRange(fresh, this.settledTo, now + 1, members);
    return {
      canary: mergeCohortStats(this.settled.canary, fresh.canary),
      shadow: mergeShadowStats(this.settled.shadow, fresh.shadow),
      control: mergeCohortStats(this.settled.control, fresh.control),
    };
  }

  private addRange(into: PhaseEvidence, from: number, to: number, members: Membership): void {
    for (const row of this.rangeStmt.iterate(from, to) as Iterable<{ device_id: string; model_sha256: string | null; payload_json: string }>) {
      const inRollout = members.inRollout(row.device_id);
      // Parse only what counts: the fleet's other windows stay text.
      if (!inRollout && !members.inControl(row.device_id)) continue;
      const w = JSON.parse(row.payload_json) as TelemetryWindow;
      if (inRollout) {
        if (row.model_sha256 === members.candidateSha256) addWindow(into.canary, w);
        if (w.shadow?.model.sha256 === members.candidateSha256) addShadow(into.shadow, row.device_id, w.shadow);
      } else {
        addWindow(into.control, w);
      }
    }
  }
}

/**
 * A device's previous model over the `seconds` before `until` (by the
 * windows' own end times, through the (device, window_end) index): what the
 * candidate's latency and skipped frames are judged against. Null with no
 * such window.
 */
export function readBaseline(db: Db, deviceId: string, modelSha256: string, until: number, seconds: number): BaselineStats | null {
  const rows = db
    .prepare('SELECT payload_json FROM telemetry_windows WHERE device_id = ? AND window_end >= ? AND window_end <= ? AND model_sha256 = ? ORDER BY window_end DESC LIMIT ?')
    .pluck()
    .all(deviceId, until - seconds * 1000, until, modelSha256, BASELINE_MAX_WINDOWS) as string[];
  if (rows.length === 0) return null;
  const s = emptyCohortStats();
  for (const json of rows) addWindow(s, JSON.parse(json) as TelemetryWindow);
  return toBaseline(s);
}
