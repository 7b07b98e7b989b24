import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { UnknownModelVersionError, type DesiredModels, type DesiredStateService, type ModelName } from '../desired-state/desired-state-service.js';
import type { Db } from '../store/database.js';
import type { DeviceLabelStore } from '../store/device-label-store.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionRecord, ModelVersionStore } from '../store/model-version-store.js';
import { rankDevices, stageCohort, type RankedDevice } from './cohort.js';
import { emptyCohortStats, fromBaseline, mergeCohortStats, type CohortStats } from './cohort-stats.js';
import { PhaseTelemetryReader, readBaseline } from './cohort-telemetry.js';
import { conflictMessage, findConflict } from './rollout-conflicts.js';
import { RolloutConflictError, RolloutError, RolloutNotFoundError, RolloutStateError } from './rollout-errors.js';
import type { RolloutEvents } from './rollout-events.js';
import { decide, evaluateGates, type DeploymentTally, type StageDecision } from './gates.js';
import { parseRolloutSpec, selectorOf, soakSecondsOf, type RolloutSpec } from './rollout-spec.js';
import {
  ACTIVE_STATES,
  type Assignment,
  type AssignmentStatus,
  type GateEvaluation,
  type PreviousDesired,
  type RolloutPhase,
  type RolloutRecord,
  type RolloutState,
  type RolloutStore,
} from './rollout-store.js';

export type OperatorAction = 'pause' | 'resume' | 'promote' | 'abort' | 'rollback';

export interface RolloutEngineDeps {
  db: Db;
  store: RolloutStore;
  labels: DeviceLabelStore;
  devices: DeviceStore;
  versions: ModelVersionStore;
  desired: DesiredStateService;
  events: RolloutEvents;
  log: Logger;
}

export interface RolloutEngineOptions {
  tickMs: number;
  /** the engine's clock (ms since the epoch): soaks, deadlines and history are measured with it */
  now?: () => number;
}

/** Devices added to a rollout per tick: a 50 % stage of a large fleet is spread over a few ticks. */
const MAX_ASSIGNMENTS_PER_TICK = 1000;
/** Control devices whose windows are read: enough for a distribution, bounded for a large fleet. */
const MAX_CONTROL_DEVICES = 2000;
/** Unchanged gate verdicts are stored at most this often; a change is stored at once. */
const EVALUATION_RECORD_MS = 30_000;
/** Operator nudges (device seen, labels changed) bring the next tick this close, no closer. */
const NUDGE_MS = 500;

const FAILED_DEPLOYMENT = new Set(['failed', 'rejected', 'rolled-back']);

/**
 * Runs staged rollouts. Each tick, for every rollout that holds devices: adds
 * the devices the current stage reaches (deterministic cohorts, so a device
 * that joins the target mid-rollout gets the stage reached), issues their
 * desired states through the desired-state service, judges the phase's
 * gates on the cohort's telemetry and reported states, and moves on: next
 * phase or stage after the soak, pause or fleet rollback on a failed gate,
 * rolled back once every device is back on its previous model. Everything
 * it knows is in SQLite, so a restarted control plane continues where it
 * was. Ticks and operator actions run one at a time.
 */
export class RolloutEngine {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private running = false;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly readers = new Map<string, { key: string; reader: PhaseTelemetryReader }>();
  private readonly recorded = new Map<string, { key: string; at: number; verdicts: string }>();

  constructor(
    private readonly deps: RolloutEngineDeps,
    private readonly opts: RolloutEngineOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Waits for the tick or action under way; none starts after. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.chain.catch(() => undefined);
  }

  /** Something changed that may move a device into a target (first seen, new labels): tick soon. */
  nudge(): void {
    if (this.running) this.schedule(NUDGE_MS);
  }

  /** One tick now, after whatever runs; for tests and the CLI. */
  tick(): Promise<void> {
    return this.serial(() => this.tickAll());
  }

  /** Runs `fn` between ticks and operator actions, so no tick issues a device a state half-way through it. */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.serial(fn);
  }

  /** Validates, checks conflicts and stores a rollout; started at once unless `start: false`. */
  create(input: unknown, actor: string | null): Promise<RolloutRecord> {
    const spec = parseRolloutSpec(input);
    return this.serial(() => {
      const version = this.deps.versions.get(spec.model.name, spec.model.version);
      if (!version) throw new UnknownModelVersionError(spec.model.name, spec.model.version);
      const targets = this.deps.labels.select(selectorOf(spec.target));
      if (targets.length === 0) throw new RolloutError(422, 'empty_target', 'the target selects no device: check its tags, groups and device ids', 'target');
      if (spec.start) this.refuseConflicts(spec, undefined);
      const now = this.now();
      const r = this.deps.store.insert({
        id: `ro-${randomBytes(8).toString('hex')}`,
        name: spec.name ?? null,
        spec,
        modelVersionId: version.id,
        state: spec.start ? 'running' : 'draft',
        stageIndex: 0,
        phase: this.firstPhase(spec),
        phaseStartedAt: spec.start ? now : null,
        reason: null,
        createdBy: actor,
        createdAt: now,
      });
      this.event(r, 'created', null, actor, now);
      if (spec.start) this.event(r, 'stage-started', `stage 1 of ${spec.stages.length}`, actor, now);
      this.nudge();
      return r;
    });
  }

  /** An operator's pause, resume, promote (skip the rest of the current phase), abort or rollback. */
  act(id: string, action: OperatorAction, actor: string | null, reason?: string): Promise<RolloutRecord> {
    return this.serial(() => {
      const r = this.deps.store.get(id);
      if (!r) throw new RolloutNotFoundError(id);
      const now = this.now();
      const why = reason ?? `operator ${action}`;
      const refuse = (): never => {
        throw new RolloutStateError(`cannot ${action} rollout ${id}: it is ${r.state}`);
      };
      switch (action) {
        case 'pause':
          if (r.state !== 'running') refuse();
          this.transition(r, { state: 'paused', reason: why }, 'paused', actor, now);
          break;
        case 'resume':
          if (r.state !== 'paused' && r.state !== 'draft') refuse();
          if (r.state === 'draft') this.refuseConflicts(r.spec, r.id);
          // Fresh evidence: what made it pause is not judged again.
          this.transition(r, { state: 'running', phaseStartedAt: now, reason: null }, r.state === 'draft' ? 'stage-started' : 'resumed', actor, now, why);
          break;
        case 'promote':
          if (r.state !== 'running' && r.state !== 'paused') refuse();
          this.advance({ ...r, state: 'running' }, now, 'promoted', actor, why);
          break;
        case 'abort':
          if (r.state !== 'draft' && r.state !== 'running' && r.state !== 'paused') refuse();
          this.transition(r, { state: 'aborted', reason: why }, 'aborted', actor, now);
          break;
        case 'rollback':
          if (r.state !== 'running' && r.state !== 'paused' && r.state !== 'aborted' && r.state !== 'completed') refuse();
          if (r.state === 'aborted' || r.state === 'completed') this.refuseConflicts(r.spec, r.id);
          this.transition(r, { state: 'rolling-back', reason: why }, 'rolling-back', actor, now);
          break;
      }
      this.nudge();
      return this.deps.store.get(id) as RolloutRecord;
    });
  }

  private serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private schedule(delayMs: number): void {
    const at = Date.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Number.POSITIVE_INFINITY;
      void this.serial(() => this.tickAll()).finally(() => {
        if (this.running) this.schedule(this.opts.tickMs);
      });
    }, delayMs);
  }

  private async tickAll(): Promise<void> {
    const active = this.deps.store.inStates(ACTIVE_STATES);
    for (const first of active) {
      let r: RolloutRecord | null = first;
      // A step that moves the rollout on (next stage, rollback) is followed at once by the next.
      for (let i = 0; i < 4 && r; i++) {
        let moved = false;
        try {
          moved = await this.step(r);
        } catch (err) {
          this.deps.log.error({ err, rolloutId: r.id }, 'rollout step failed; tried again next tick');
        }
        r = moved ? this.deps.store.get(r.id) : null;
        if (r && !ACTIVE_STATES.includes(r.state)) r = null;
      }
    }
    const live = new Set(active.map((r) => r.id));
    for (const id of this.readers.keys()) if (!live.has(id)) this.readers.delete(id);
    for (const id of this.recorded.keys()) if (!live.has(id)) this.recorded.delete(id);
  }

  /** One rollout, one step; true when its state moved. */
  private async step(r: RolloutRecord): Promise<boolean> {
    const candidate = this.deps.versions.byId(r.modelVersionId);
    if (!candidate) throw new Error(`rollout ${r.id}: model version ${r.modelVersionId} is gone`);
    const now = this.now();
    let ranked: RankedDevice[] = [];
    if (r.state === 'running') {
      ranked = rankDevices(r.id, this.deps.labels.select(selectorOf(r.spec.target)));
      this.addMembers(r, ranked, now);
    }
    const assignments = this.deps.store.assignments(r.id);
    await this.applyAssignments(r, candidate, assignments);
    if (r.state === 'running') return this.judge(r, candidate, ranked, this.deps.store.assignments(r.id));
    if (r.state === 'rolling-back') return this.finishRollback(r, candidate, this.deps.store.assignments(r.id));
    return false;
  }

  private firstPhase(spec: RolloutSpec): RolloutPhase {
    return spec.mode === 'shadow-then-replace' ? 'shadow' : 'replace';
  }

  private refuseConflicts(spec: RolloutSpec, excludeId: string | undefined): void {
    const c = findConflict(this.deps.store, this.deps.labels, spec.target, excludeId);
    if (c) throw new RolloutConflictError(conflictMessage(c));
  }

  // -- membership ----------------------------------------------------------------------------------

  /** Adds the devices the current stage reaches and the rollout does not hold yet, each with its previous desired state and baseline. */
  private addMembers(r: RolloutRecord, ranked: readonly RankedDevice[], now: number): void {
    const stage = r.spec.stages[r.stageIndex];
    if (!stage) return;
    const have = new Set(this.deps.store.assignments(r.id).map((a) => a.deviceId));
    const fresh = stageCohort(ranked, stage)
      .filter((d) => !have.has(d.deviceId))
      .slice(0, MAX_ASSIGNMENTS_PER_TICK);
    if (fresh.length === 0) return;
    const baselineSeconds = r.spec.gates.latency?.baselineSeconds ?? 3600;
    this.deps.store.assign(
      fresh.map((d) => {
        const previous = this.previousOf(d.deviceId);
        const prevVersion = previous.activeVersionId === null ? null : this.deps.versions.byId(previous.activeVersionId);
        return {
          rolloutId: r.id,
          deviceId: d.deviceId,
          stageIndex: r.stageIndex,
          hash: d.hash,
          assignedAt: now,
          previous,
          baseline: prevVersion ? readBaseline(this.deps.db, d.deviceId, prevVersion.sha256, now, baselineSeconds) : null,
        };
      }),
    );
  }

  /** What the device was desired to run before: what a rollback restores. */
  private previousOf(deviceId: string): PreviousDesired {
    const rec = this.deps.desired.get(deviceId);
    if (!rec) return { activeVersionId: null, shadowVersionId: null, shadowSampleRate: null };
    const shadow = rec.envelope.signed.shadow?.custom;
    return {
      activeVersionId: rec.modelVersionId,
      shadowVersionId: shadow ? (this.deps.versions.get(shadow.name, shadow.version)?.id ?? null) : null,
      shadowSampleRate: shadow ? (rec.envelope.signed.shadowSampleRate ?? null) : null,
    };
  }

  // -- desired states ------------------------------------------------------------------------------

  /** What a device of the rollout should have now; null: leave it as it is. */
  private wanted(r: RolloutRecord, a: Assignment): AssignmentStatus | null {
    // Set by hand since: what the operator chose stands, through a rollback too.
    if (a.releasedAt !== null) return null;
    if (r.state === 'rolling-back') return 'restored';
    if (r.state !== 'running' || a.status === 'restored') return null;
    if (r.phase === 'shadow' && a.stageIndex === r.stageIndex) {
      // A challenger needs a champion: a device with no model waits for the replace phase.
      return a.previous.activeVersionId === null ? null : 'shadow';
    }
    return 'replaced';
  }

  private async applyAssignments(r: RolloutRecord, candidate: ModelVersionRecord, assignments: readonly Assignment[]): Promise<void> {
    for (const a of assignments) {
      const want = this.wanted(r, a);
      if (want === null || want === a.status) continue;
      if (want === 'restored' && a.status === 'pending') {
        // Nothing was issued: nothing to undo.
        this.deps.store.setStatus(r.id, a.deviceId, 'restored', null, this.now());
        continue;
      }
      // Signed with the real time: devices check expiry against their own clocks.
      const rec = await this.deps.desired.setDesired(a.deviceId, this.desiredFor(r, candidate, a, want), new Date());
      this.deps.store.setStatus(r.id, a.deviceId, want, rec.generation, this.now());
    }
  }

  private desiredFor(r: RolloutRecord, candidate: ModelVersionRecord, a: Assignment, want: AssignmentStatus): DesiredModels {
    const prevActive = a.previous.activeVersionId === null ? null : this.deps.versions.byId(a.previous.activeVersionId);
    const prevShadow = a.previous.shadowVersionId === null ? null : this.deps.versions.byId(a.previous.shadowVersionId);
    const ref = (v: ModelVersionRecord | null): ModelName | null => (v ? { name: v.name, version: v.version } : null);
    switch (want) {
      case 'shadow':
        return { active: ref(prevActive), shadow: ref(candidate), shadowSampleRate: r.spec.shadow.sampleRate };
      case 'replaced':
        // A rollout may take a device back to an older model on purpose.
        return { active: ref(candidate), shadow: null, rollback: prevActive !== null && prevActive.createdAt > candidate.createdAt };
      default:
        return {
          active: ref(prevActive),
          shadow: ref(prevShadow),
          ...(prevShadow && a.previous.shadowSampleRate !== null ? { shadowSampleRate: a.previous.shadowSampleRate } : {}),
          rollback: a.status === 'replaced' && prevActive !== null && prevActive.createdAt < candidate.createdAt,
        };
    }
  }

  // -- gates ---------------------------------------------------------------------------------------

  private judge(r: RolloutRecord, candidate: ModelVersionRecord, ranked: readonly RankedDevice[], assignments: readonly Assignment[]): boolean {
    const now = this.now();
    const status: AssignmentStatus = r.phase === 'shadow' ? 'shadow' : 'replaced';
    // Released devices run what an operator chose: neither canary nor control.
    const managed = assignments.filter((a) => a.releasedAt === null);
    const cohort = managed.filter((a) => a.status === status);
    if (cohort.length === 0 && r.phase === 'shadow' && !managed.some((a) => a.stageIndex === r.stageIndex && a.status === 'pending' && a.previous.activeVersionId !== null)) {
      // No device of this stage can run a challenger (none has a model): straight to replacing.
      this.advance(r, now, 'stage-phase-skipped', null, 'no device of this stage runs a model to shadow');
      return true;
    }
    const phaseStart = r.phaseStartedAt ?? now;
    const members = new Set(managed.map((a) => a.deviceId));
    const held = new Set(assignments.map((a) => a.deviceId));
    const control = new Set<string>();
    // The control cohort: target devices the rollout does not hold, the last by rank first (the last to join).
    for (let i = ranked.length - 1; i >= 0 && control.size < MAX_CONTROL_DEVICES; i--) {
      const d = ranked[i] as RankedDevice;
      if (!held.has(d.deviceId)) control.add(d.deviceId);
    }
    const evidence = this.readerFor(r, phaseStart).read(now, {
      candidateSha256: candidate.sha256,
      inRollout: (id) => members.has(id),
      inControl: (id) => control.has(id),
    });
    const evaluations = evaluateGates({
      gates: r.spec.gates,
      phase: r.phase,
      cohortSize: cohort.length,
      deployment: this.tally(cohort, r.phase),
      evidence,
      baseline: this.baselineOf(cohort, evidence.canary.devices),
    });
    const soakMs = soakSecondsOf(r.spec, r.stageIndex, r.phase) * 1000;
    const deadline = r.spec.gates.insufficientDataDeadlineSeconds;
    const decision = decide(evaluations, now - phaseStart >= soakMs, deadline !== null && now - phaseStart >= soakMs + deadline * 1000);
    this.record(r, evaluations, decision, now);
    if (decision.verdict === 'pass') {
      this.advance(r, now, 'stage-passed', null, 'gates passed');
      return true;
    }
    if (decision.verdict === 'fail') {
      const next: RolloutState = r.spec.onFail === 'pause' ? 'paused' : 'rolling-back';
      this.transition(r, { state: next, reason: decision.reason }, next, null, now);
      return true;
    }
    return false;
  }

  private readerFor(r: RolloutRecord, phaseStart: number): PhaseTelemetryReader {
    const key = `${r.stageIndex}:${r.phase}:${phaseStart}`;
    const have = this.readers.get(r.id);
    if (have?.key === key) return have.reader;
    const reader = new PhaseTelemetryReader(this.deps.db, phaseStart);
    this.readers.set(r.id, { key, reader });
    return reader;
  }

  /** How the cohort's devices took what the rollout issued them, from their reported states. */
  private tally(cohort: readonly Assignment[], phase: RolloutPhase): DeploymentTally {
    const out: DeploymentTally = { succeeded: 0, failed: 0, failures: [] };
    for (const a of cohort) {
      const reported = this.deps.devices.get(a.deviceId)?.reported;
      if (!reported || a.generation === null) continue;
      if (phase === 'shadow') {
        const s = reported.shadow;
        if (!s || s.generation !== a.generation) continue;
        if (s.phase === 'running') out.succeeded++;
        else if (s.phase === 'failed' || s.phase === 'rejected') {
          out.failed++;
          out.failures.push({ deviceId: a.deviceId, phase: s.phase, ...(s.reason ? { reason: s.reason } : {}) });
        }
        continue;
      }
      const d = reported.deployment;
      if (d.generation !== a.generation) continue;
      if (d.phase === 'active') out.succeeded++;
      else if (FAILED_DEPLOYMENT.has(d.phase)) {
        out.failed++;
        out.failures.push({ deviceId: a.deviceId, phase: d.phase, ...(d.reason ? { reason: d.reason } : {}) });
      }
    }
    return out;
  }

  /** The previous model's telemetry of the cohort devices that report the candidate (all of the cohort's while none does). */
  private baselineOf(cohort: readonly Assignment[], reporting: ReadonlySet<string>): CohortStats {
    let out = emptyCohortStats();
    const from = cohort.some((a) => reporting.has(a.deviceId)) ? cohort.filter((a) => reporting.has(a.deviceId)) : cohort;
    for (const a of from) if (a.baseline) out = mergeCohortStats(out, fromBaseline(a.baseline, a.deviceId));
    return out;
  }

  private record(r: RolloutRecord, evaluations: readonly GateEvaluation[], decision: StageDecision, now: number): void {
    const key = `${r.stageIndex}:${r.phase}:${r.phaseStartedAt}`;
    const verdicts = evaluations.map((g) => `${g.gate}=${g.verdict}`).join(',');
    const last = this.recorded.get(r.id);
    if (decision.verdict === 'wait' && last?.key === key && last.verdicts === verdicts && now - last.at < EVALUATION_RECORD_MS) return;
    this.deps.store.addEvaluations(r.id, r.stageIndex, r.phase, now, evaluations);
    this.recorded.set(r.id, { key, at: now, verdicts });
  }

  // -- moving on -----------------------------------------------------------------------------------

  /** The next phase, the next stage, or completed. */
  private advance(r: RolloutRecord, now: number, type: string, actor: string | null, reason: string): void {
    const last = r.spec.stages.length - 1;
    if (r.phase === 'shadow') {
      this.transition(r, { state: 'running', phase: 'replace', phaseStartedAt: now, reason: null }, type, actor, now, `${reason}; stage ${r.stageIndex + 1}: replacing`);
    } else if (r.stageIndex < last) {
      const stageIndex = r.stageIndex + 1;
      this.transition(r, { state: 'running', stageIndex, phase: this.firstPhase(r.spec), phaseStartedAt: now, reason: null }, type, actor, now, `${reason}; stage ${stageIndex + 1} of ${last + 1}`);
    } else {
      this.transition(r, { state: 'completed', reason: null }, type === 'stage-passed' ? 'completed' : type, actor, now, reason);
    }
  }

  /** Back on their previous models: every device restored and either reporting its previous model or offline (it converges when back). */
  private finishRollback(r: RolloutRecord, candidate: ModelVersionRecord, all: readonly Assignment[]): boolean {
    // Released devices are the operator's: not waited for.
    const assignments = all.filter((a) => a.releasedAt === null);
    if (assignments.some((a) => a.status !== 'restored')) return false;
    let offline = 0;
    for (const a of assignments) {
      if (a.generation === null) continue;
      const device = this.deps.devices.get(a.deviceId);
      if (!device || device.status !== 'online') {
        offline++;
        continue;
      }
      const rep = device.reported;
      if (!rep) return false;
      const prevSha = a.previous.activeVersionId === null ? null : (this.deps.versions.byId(a.previous.activeVersionId)?.sha256 ?? null);
      const handled = Math.max(rep.acceptedGeneration, rep.deployment.generation) >= a.generation;
      const back = (rep.active?.sha256 ?? null) === prevSha && rep.active?.sha256 !== candidate.sha256;
      if (!handled || !back) return false;
    }
    const note = offline > 0 ? `; ${offline} offline device(s) get their previous model when they reconnect` : '';
    this.transition(r, { state: 'rolled-back' }, 'rolled-back', null, this.now(), `${r.reason ?? 'rolled back'}${note}`);
    return true;
  }

  private transition(
    r: RolloutRecord,
    change: Partial<Pick<RolloutRecord, 'state' | 'stageIndex' | 'phase' | 'phaseStartedAt' | 'reason'>>,
    type: string,
    actor: string | null,
    now: number,
    eventReason?: string,
  ): void {
    const next = {
      state: change.state ?? r.state,
      stageIndex: change.stageIndex ?? r.stageIndex,
      phase: change.phase ?? r.phase,
      phaseStartedAt: change.phaseStartedAt !== undefined ? change.phaseStartedAt : r.phaseStartedAt,
      reason: change.reason !== undefined ? change.reason : r.reason,
    };
    this.deps.store.update(r.id, next, now);
    this.event({ ...r, ...next }, type, eventReason ?? next.reason, actor, now);
  }

  private event(r: RolloutRecord, type: string, reason: string | null, actor: string | null, at: number): void {
    this.deps.events.record({ rolloutId: r.id, at, type, state: r.state, stageIndex: r.stageIndex, phase: r.phase, reason, actor }, r.spec.model);
  }
}
