import { writeTransaction, type Db } from '../store/database.js';
import type { BaselineStats } from './cohort-stats.js';
import type { RolloutSpec } from './rollout-spec.js';

export const ROLLOUT_STATES = ['draft', 'running', 'paused', 'rolling-back', 'rolled-back', 'aborted', 'completed'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
/** States in which a rollout holds its devices: another rollout may not aim at them. */
export const ACTIVE_STATES: readonly RolloutState[] = ['running', 'paused', 'rolling-back'];

export type RolloutPhase = 'shadow' | 'replace';

export interface RolloutRecord {
  id: string;
  name: string | null;
  spec: RolloutSpec;
  modelVersionId: number;
  state: RolloutState;
  stageIndex: number;
  phase: RolloutPhase;
  phaseStartedAt: number | null;
  reason: string | null;
  createdBy: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A device's desired state before the rollout touched it, by model version id. */
export interface PreviousDesired {
  activeVersionId: number | null;
  shadowVersionId: number | null;
  shadowSampleRate: number | null;
}

/** pending: chosen, nothing issued yet; shadow: runs the candidate as challenger; replaced: runs the candidate; restored: back on its previous state. */
export type AssignmentStatus = 'pending' | 'shadow' | 'replaced' | 'restored';

export interface Assignment {
  rolloutId: string;
  deviceId: string;
  /** the stage it joined in */
  stageIndex: number;
  hash: number;
  assignedAt: number;
  previous: PreviousDesired;
  baseline: BaselineStats | null;
  status: AssignmentStatus;
  /** the last desired-state generation the rollout issued for it */
  generation: number | null;
  updatedAt: number;
  /** when an operator set its desired model by hand: the rollout issues it nothing more and does not judge it */
  releasedAt: number | null;
  /** who did (the API token), for the history */
  releasedBy: string | null;
}

export interface RolloutEvent {
  id: number;
  rolloutId: string;
  at: number;
  type: string;
  state: RolloutState;
  stageIndex: number;
  phase: RolloutPhase;
  reason: string | null;
  actor: string | null;
}

export type GateVerdict = 'pass' | 'fail' | 'wait' | 'skip';

export interface GateEvaluation {
  gate: string;
  value: number | null;
  threshold: number | null;
  verdict: GateVerdict;
  detail?: Record<string, unknown>;
}

export interface StoredGateEvaluation extends GateEvaluation {
  id: number;
  rolloutId: string;
  stageIndex: number;
  phase: RolloutPhase;
  at: number;
}

interface RolloutRow {
  id: string;
  name: string | null;
  spec_json: string;
  model_version_id: number;
  state: RolloutState;
  stage_index: number;
  phase: RolloutPhase;
  phase_started_at: number | null;
  reason: string | null;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

interface AssignmentRow {
  rollout_id: string;
  device_id: string;
  stage_index: number;
  hash: number;
  assigned_at: number;
  previous_json: string;
  baseline_json: string | null;
  status: AssignmentStatus;
  generation: number | null;
  updated_at: number;
  released_at: number | null;
  released_by: string | null;
}

const toRollout = (r: RolloutRow): RolloutRecord => ({
  id: r.id,
  name: r.name,
  spec: JSON.parse(r.spec_json) as RolloutSpec,
  modelVersionId: r.model_version_id,
  state: r.state,
  stageIndex: r.stage_index,
  phase: r.phase,
  phaseStartedAt: r.phase_started_at,
  reason: r.reason,
  createdBy: r.created_by,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toAssignment = (r: AssignmentRow): Assignment => ({
  rolloutId: r.rollout_id,
  deviceId: r.device_id,
  stageIndex: r.stage_index,
  hash: r.hash,
  assignedAt: r.assigned_at,
  previous: JSON.parse(r.previous_json) as PreviousDesired,
  baseline: r.baseline_json === null ? null : (JSON.parse(r.baseline_json) as BaselineStats),
  status: r.status,
  generation: r.generation,
  updatedAt: r.updated_at,
  releasedAt: r.released_at,
  releasedBy: r.released_by,
});

/** Rollouts, their devices, their history and their gate evaluations: everything the engine knows, so a restart loses nothing. */
export class RolloutStore {
  constructor(private readonly db: Db) {}

  /** Runs `fn` in one transaction (a savepoint inside another). */
  atomically<T>(fn: () => T): T {
    return writeTransaction(this.db, fn)();
  }

  insert(r: Omit<RolloutRecord, 'updatedAt'>): RolloutRecord {
    this.db
      .prepare(
        `INSERT INTO rollouts (id, name, spec_json, model_version_id, state, stage_index, phase, phase_started_at, reason, created_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(r.id, r.name, JSON.stringify(r.spec), r.modelVersionId, r.state, r.stageIndex, r.phase, r.phaseStartedAt, r.reason, r.createdBy, r.createdAt, r.createdAt);
    return { ...r, updatedAt: r.createdAt };
  }

  get(id: string): RolloutRecord | null {
    const row = this.db.prepare('SELECT * FROM rollouts WHERE id = ?').get(id) as RolloutRow | undefined;
    return row ? toRollout(row) : null;
  }

  inStates(states: readonly RolloutState[]): RolloutRecord[] {
    return (this.db.prepare('SELECT * FROM rollouts WHERE state IN (SELECT value FROM json_each(?)) ORDER BY created_at, id').all(JSON.stringify(states)) as RolloutRow[]).map(toRollout);
  }

  /** Newest first, after the (createdAt, id) key of the last one seen. */
  page(after: { createdAt: number; id: string } | null, limit: number): RolloutRecord[] {
    const rows = after
      ? this.db.prepare('SELECT * FROM rollouts WHERE (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?').all(after.createdAt, after.id, limit)
      : this.db.prepare('SELECT * FROM rollouts ORDER BY created_at DESC, id DESC LIMIT ?').all(limit);
    return (rows as RolloutRow[]).map(toRollout);
  }

  update(id: string, change: { state: RolloutState; stageIndex: number; phase: RolloutPhase; phaseStartedAt: number | null; reason: string | null }, at: number): void {
    this.db
      .prepare('UPDATE rollouts SET state = ?, stage_index = ?, phase = ?, phase_started_at = ?, reason = ?, updated_at = ? WHERE id = ?')
      .run(change.state, change.stageIndex, change.phase, change.phaseStartedAt, change.reason, at, id);
  }

  assignments(rolloutId: string): Assignment[] {
    return (this.db.prepare('SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY hash').all(rolloutId) as AssignmentRow[]).map(toAssignment);
  }

  assignment(rolloutId: string, deviceId: string): Assignment | null {
    const row = this.db.prepare('SELECT * FROM rollout_devices WHERE rollout_id = ? AND device_id = ?').get(rolloutId, deviceId) as AssignmentRow | undefined;
    return row ? toAssignment(row) : null;
  }

  /** Adds devices to a rollout; a device already in it keeps its first assignment. */
  assign(rows: readonly Omit<Assignment, 'status' | 'generation' | 'updatedAt' | 'releasedAt' | 'releasedBy'>[]): void {
    const stmt = this.db.prepare(
      `INSERT OR IGNORE INTO rollout_devices (rollout_id, device_id, stage_index, hash, assigned_at, previous_json, baseline_json, status, generation, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?)`,
    );
    writeTransaction(this.db, () => {
      for (const a of rows) stmt.run(a.rolloutId, a.deviceId, a.stageIndex, a.hash, a.assignedAt, JSON.stringify(a.previous), a.baseline ? JSON.stringify(a.baseline) : null, a.assignedAt);
    })();
  }

  setStatus(rolloutId: string, deviceId: string, status: AssignmentStatus, generation: number | null, at: number): void {
    this.db.prepare('UPDATE rollout_devices SET status = ?, generation = COALESCE(?, generation), updated_at = ? WHERE rollout_id = ? AND device_id = ?').run(status, generation, at, rolloutId, deviceId);
  }

  /** Devices the rollout still manages, by status, and those released from it by hand. */
  statusCounts(rolloutId: string): Record<AssignmentStatus | 'released', number> {
    const out: Record<AssignmentStatus | 'released', number> = { pending: 0, shadow: 0, replaced: 0, restored: 0, released: 0 };
    const rows = this.db
      .prepare("SELECT CASE WHEN released_at IS NULL THEN status ELSE 'released' END AS s, COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? GROUP BY s")
      .all(rolloutId) as { s: AssignmentStatus | 'released'; n: number }[];
    for (const r of rows) out[r.s] = r.n;
    return out;
  }

  /** The rollouts `deviceId` is in and not released from, oldest first. */
  holding(deviceId: string): RolloutRecord[] {
    return (
      this.db
        .prepare('SELECT r.* FROM rollouts r JOIN rollout_devices d ON d.rollout_id = r.id WHERE d.device_id = ? AND d.released_at IS NULL ORDER BY r.created_at, r.id')
        .all(deviceId) as RolloutRow[]
    ).map(toRollout);
  }

  /** Takes a device out of a rollout's hands for good; it stays listed, as released. */
  release(rolloutId: string, deviceId: string, actor: string | null, at: number): void {
    this.db
      .prepare('UPDATE rollout_devices SET released_at = ?, released_by = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ? AND released_at IS NULL')
      .run(at, actor, at, rolloutId, deviceId);
  }

  /** Appends to the rollout's history; the stored event, with its id. */
  addEvent(e: Omit<RolloutEvent, 'id'>): RolloutEvent {
    const info = this.db
      .prepare('INSERT INTO rollout_events (rollout_id, at, type, state, stage_index, phase, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.rolloutId, e.at, e.type, e.state, e.stageIndex, e.phase, e.reason, e.actor);
    return { ...e, id: Number(info.lastInsertRowid) };
  }

  events(rolloutId: string): RolloutEvent[] {
    return (
      this.db.prepare('SELECT id, rollout_id, at, type, state, stage_index, phase, reason, actor FROM rollout_events WHERE rollout_id = ? ORDER BY id').all(rolloutId) as {
        id: number;
        rollout_id: string;
        at: number;
        type: string;
        state: RolloutState;
        stage_index: number;
        phase: RolloutPhase;
        reason: string | null;
        actor: string | null;
      }[]
    ).map((r) => ({ id: r.id, rolloutId: r.rollout_id, at: r.at, type: r.type, state: r.state, stageIndex: r.stage_index, phase: r.phase, reason: r.reason, actor: r.actor }));
  }

  addEvaluations(rolloutId: string, stageIndex: number, phase: RolloutPhase, at: number, evaluations: readonly GateEvaluation[]): void {
    const stmt = this.db.prepare(
      'INSERT INTO rollout_gate_evaluations (rollout_id, stage_index, phase, at, gate, value, threshold, verdict, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const finite = (v: number | null) => (v === null || !Number.isFinite(v) ? null : v);
    writeTransaction(this.db, () => {
      for (const g of evaluations) stmt.run(rolloutId, stageIndex, phase, at, g.gate, finite(g.value), finite(g.threshold), g.verdict, g.detail ? JSON.stringify(g.detail) : null);
    })();
  }

  evaluations(rolloutId: string): StoredGateEvaluation[] {
    return (
      this.db.prepare('SELECT * FROM rollout_gate_evaluations WHERE rollout_id = ? ORDER BY id').all(rolloutId) as {
        id: number;
        rollout_id: string;
        stage_index: number;
        phase: RolloutPhase;
        at: number;
        gate: string;
        value: number | null;
        threshold: number | null;
        verdict: GateVerdict;
        detail_json: string | null;
      }[]
    ).map((r) => ({
      id: r.id,
      rolloutId: r.rollout_id,
      stageIndex: r.stage_index,
      phase: r.phase,
      at: r.at,
      gate: r.gate,
      value: r.value,
      threshold: r.threshold,
      verdict: r.verdict,
      ...(r.detail_json ? { detail: JSON.parse(r.detail_json) as Record<string, unknown> } : {}),
    }));
  }
}
