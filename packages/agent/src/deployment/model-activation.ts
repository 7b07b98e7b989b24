import { modelRefOf, type ModelRef } from '@perch/shared';
import type { InferencePipeline, ModelToRun, PreparedModel } from '../inference/inference-pipeline.js';
import { ModelLoadError } from '../inference/inference-runner.js';
import type { Logger } from '../log/logger.js';
import type { ActivePointer, ModelStore } from '../model-store/model-store.js';
import type { DeploymentConfig } from './deployment-config.js';
import { smokeTest } from './golden-smoke-test.js';
import { watchHealth } from './health-window.js';
import type { ReportedStateReporter } from './reported-state-reporter.js';
import { decodeStoredTarget, type VerifiedTarget } from './signed-documents.js';

/** The model itself is at fault (it does not load, or fails its golden input): retrying the same target cannot help. */
export class RefusedModel extends Error {
  override readonly name = 'RefusedModel';
}

export type ActivationOutcome = { kind: 'active' } | { kind: 'rolled-back'; reason: string } | { kind: 'superseded' };

export interface RestoreOutcome {
  /** the state at the accepted generation is settled (running it, or deliberately nothing) */
  settled: boolean;
  /** the model restored is inside its health window: watch it (resumeHealthWindow) */
  resumeWindow: boolean;
}

export interface ActivationOptions {
  config: DeploymentConfig;
  /** models kept on disk (see ModelStore.collectGarbage) */
  maxCachedModels: number;
  /** models the cache must keep besides the active and known-good ones (the challenger in shadow mode: promoting it must not need a download) */
  retain?: () => Iterable<string>;
}

const EMPTY: ActivePointer = { acceptedGeneration: 0, active: null, knownGood: null };

/**
 * What runs, and the on-disk pointer that says so (active.json). The order
 * of every change is what makes a crash at any instant harmless:
 *
 * 1. the new model loads in a fresh worker and runs its golden input while
 *    the old one still runs the cameras;
 * 2. the pointer is replaced atomically: active = new, knownGood = the last
 *    model that passed a health window, trial = this generation;
 * 3. the cameras switch to the new worker and the health window runs;
 * 4. the pointer is replaced again: knownGood = new (passed), or
 *    active = knownGood with the generation marked rolled back (failed).
 *
 * A restart finds either pointer, each naming a model that is on disk and
 * was checked. A restart inside a health window (pointer with `trial`) goes
 * back to the known-good model and marks the generation rolled back: the
 * restart may be the new model's doing (a native crash in onnxruntime, the
 * OOM killer), and resuming it could loop crash after crash with no model
 * running for most of the time. Only with no known-good model to go back to
 * (the box's first model) is the window resumed on the new model, since the
 * alternative would be no model at all.
 */
export class ModelActivation {
  private pointer: ActivePointer = EMPTY;
  private running: VerifiedTarget | null = null;

  constructor(
    private readonly opts: ActivationOptions,
    private readonly store: ModelStore,
    private readonly pipeline: InferencePipeline,
    private readonly reporter: ReportedStateReporter,
    private readonly log: Logger,
  ) {}

  get acceptedGeneration(): number {
    return this.pointer.acceptedGeneration;
  }

  /** The model running (or, mid-switch, the one about to). */
  get active(): VerifiedTarget | null {
    return this.running;
  }

  get knownGood(): string | null {
    return this.pointer.knownGood;
  }

  /** The generation that was rolled back, when it is the latest one accepted. */
  get rolledBack(): ActivePointer['rolledBack'] {
    return this.pointer.rolledBack;
  }

  /**
   * Switches to a model already on disk and checked: activating (load,
   * golden input), the atomic pointer, the switch, then the health window.
   * Throws RefusedModel for a model that fails to load or its golden input,
   * and any disk error (ENOSPC writing the pointer) with the old model still
   * running. `beforeSwitch` runs once the new model passed its golden input
   * (the challenger stops there: nothing may compete with a health window).
   */
  async activate(generation: number, target: VerifiedTarget, modelPath: string, signal: AbortSignal, beforeSwitch?: () => Promise<void>): Promise<ActivationOutcome> {
    const t = target;
    const ref = modelRefOf(t);
    this.reporter.setDeployment({ phase: 'activating', generation, target: ref });
    const prepared = await this.prepare({ modelPath, target: t });
    let switched = false;
    let smokeMs: number;
    try {
      smokeMs = await this.smoke(prepared, ref);
      if (signal.aborted) return { kind: 'superseded' };
      await beforeSwitch?.();
      // On disk before the switch: a crash from here on restarts into the trial rule (see the class comment).
      await this.writePointer({ acceptedGeneration: generation, active: t.hashes.sha256, knownGood: this.pointer.knownGood, trial: { generation, smokeMs } });
      await this.pipeline.switchTo(prepared);
      switched = true;
    } finally {
      if (!switched) await this.pipeline.discard(prepared);
    }
    this.setRunning(generation, target);
    return this.holdHealthWindow(generation, target, prepared.model, smokeMs, signal);
  }

  /** A newer generation naming the model that already runs: nothing to load; a window still open starts over under it. */
  async reaffirm(generation: number, target: VerifiedTarget, signal: AbortSignal): Promise<ActivationOutcome> {
    const sha = target.hashes.sha256;
    const trial = this.pointer.trial;
    const model = this.pipeline.activeModel;
    if (trial && model) {
      await this.writePointer({ acceptedGeneration: generation, active: sha, knownGood: this.pointer.knownGood, trial: { generation, smokeMs: trial.smokeMs } });
      this.setRunning(generation, target);
      return this.holdHealthWindow(generation, target, model, trial.smokeMs, signal);
    }
    await this.writePointer({ acceptedGeneration: generation, active: sha, knownGood: this.pointer.knownGood ?? sha });
    this.setRunning(generation, target);
    this.reporter.setDeployment({ phase: 'active', generation, target: modelRefOf(target) });
    return { kind: 'active' };
  }

  /** `active: null`: cameras and worker stop. Nothing is known-good any more: a later model that fails goes back to nothing, as before it. */
  async runNothing(generation: number): Promise<void> {
    await this.pipeline.deactivate();
    await this.writePointer({ acceptedGeneration: generation, active: null, knownGood: null });
    this.running = null;
    this.reporter.setAccepted(generation, null);
    this.reporter.setDeployment({ phase: 'idle', generation, target: null });
  }

  /**
   * At start, with no control plane needed: the model the pointer names,
   * or after a restart inside a health window the known-good one (see the
   * class comment); if the first choice does not load, the other.
   */
  async restore(): Promise<RestoreOutcome> {
    let pointer: ActivePointer | undefined;
    try {
      pointer = await this.store.readActive();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'active model pointer unreadable; starting with no model');
    }
    this.pointer = pointer ?? EMPTY;
    const p = this.pointer;
    this.reporter.setAccepted(p.acceptedGeneration, null);
    if (p.active === null) {
      this.reportSettled(p.acceptedGeneration, 'idle');
      return { settled: true, resumeWindow: false };
    }
    const fallback = p.knownGood !== null && p.knownGood !== p.active ? p.knownGood : null;
    const order = p.trial && fallback ? [fallback, p.active] : [p.active, ...(fallback ? [fallback] : [])];
    const failures: string[] = [];
    for (const sha of order) {
      try {
        const stored = await this.loadStored(sha);
        await this.pipeline.activate(stored.model);
        return await this.restored(sha, stored.target, failures);
      } catch (err) {
        failures.push(`stored model ${sha} not restored: ${(err as Error).message}`);
        this.log.error({ sha256: sha, err: (err as Error).message }, 'stored model not restored');
      }
    }
    const reason = failures.join('; ');
    this.log.error({ reason }, 'running no model');
    this.reporter.setDeployment({ phase: 'failed', generation: p.acceptedGeneration, target: null, reason });
    return { settled: false, resumeWindow: false };
  }

  /** The restored model runs; records and reports why it is this one. */
  private async restored(sha: string, target: VerifiedTarget, failures: string[]): Promise<RestoreOutcome> {
    const p = this.pointer;
    const generation = p.acceptedGeneration;
    const ref = modelRefOf(target);
    this.running = target;
    this.reporter.setAccepted(generation, ref);
    if (sha === p.active && p.trial) {
      const why = failures.length > 0 ? 'the known-good model did not load' : 'there is no known-good model to go back to';
      this.log.warn({ model: ref, generation, failures }, `restarted inside the health window and ${why}: the window starts again on this model`);
      this.reporter.setDeployment({ phase: 'health-check', generation, target: ref });
      return { settled: false, resumeWindow: true };
    }
    if (sha === p.active) {
      this.log.info({ model: ref, generation }, 'restored the active model from the store');
      this.reportSettled(generation, 'active');
      return { settled: true, resumeWindow: false };
    }
    // The known-good model, instead of the one the pointer made active.
    const trialRef = await this.refOf(p.active);
    if (p.trial) {
      const reason = `the agent restarted during the health window of generation ${p.trial.generation}; back on the known-good model ${ref.name}@${ref.version}`;
      await this.writePointer({ acceptedGeneration: generation, active: sha, knownGood: sha, rolledBack: { generation: p.trial.generation, target: trialRef, reason } });
      this.log.warn({ model: ref, rolledBack: trialRef, generation: p.trial.generation }, 'rolled back after a restart inside the health window');
      this.reportSettled(generation, 'active');
      return { settled: true, resumeWindow: false };
    }
    await this.writePointer({ acceptedGeneration: generation, active: sha, knownGood: sha });
    const reason = `${failures.join('; ')}; running the known-good model ${ref.name}@${ref.version}`;
    this.log.error({ reason }, 'the active model is damaged; running the known-good one');
    this.reporter.setDeployment({ phase: 'failed', generation, target: trialRef, reason });
    return { settled: false, resumeWindow: false };
  }

  /** The health window of a model restored inside it (restore() said resumeWindow). */
  async resumeHealthWindow(signal: AbortSignal): Promise<ActivationOutcome> {
    const trial = this.pointer.trial;
    const model = this.pipeline.activeModel;
    if (!trial || !model || !this.running) return { kind: 'active' };
    return this.holdHealthWindow(trial.generation, this.running, model, trial.smokeMs, signal);
  }

  private async prepare(model: ModelToRun): Promise<PreparedModel> {
    try {
      return await this.pipeline.prepare(model);
    } catch (err) {
      if (err instanceof ModelLoadError) throw new RefusedModel(err.message);
      throw err;
    }
  }

  /** The golden input in the new worker; returns its run time, the health window's baseline. */
  private async smoke(prepared: PreparedModel, ref: ModelRef): Promise<number> {
    const smoke = await smokeTest(prepared.runner, prepared.model.target);
    if (smoke.outcome === 'failed') throw new RefusedModel(smoke.reason);
    if (smoke.outcome === 'no-golden') this.log.warn({ model: ref, runMs: smoke.runMs }, 'the target has no golden input (registered before golden inputs); activating without the output check');
    else this.log.info({ model: ref, maxDiff: smoke.maxDiff, runMs: smoke.runMs }, 'golden input matches');
    return smoke.runMs;
  }

  private async holdHealthWindow(generation: number, target: VerifiedTarget, model: ModelToRun, smokeMs: number | null, signal: AbortSignal): Promise<ActivationOutcome> {
    const ref = modelRefOf(target);
    const c = this.opts.config;
    if (c.healthWindowSeconds > 0) {
      this.reporter.setDeployment({ phase: 'health-check', generation, target: ref });
      const verdict = await watchHealth(this.pipeline, model, { ...c, windowMs: c.healthWindowSeconds * 1000, baselineMs: smokeMs }, signal);
      // Left as a trial on disk: whatever comes next starts from the same known-good model.
      if (verdict === 'aborted') return { kind: 'superseded' };
      if (!verdict.ok) return this.rollBack(generation, target, verdict.reason);
      this.log.info({ model: ref, generation, result: verdict.summary }, 'health window passed');
    }
    const sha = target.hashes.sha256;
    await this.writePointer({ acceptedGeneration: generation, active: sha, knownGood: sha });
    this.reporter.setDeployment({ phase: 'active', generation, target: ref });
    await this.prune();
    return { kind: 'active' };
  }

  /**
   * Back to the known-good model after a failed window: it loads first, the
   * pointer says so, then the cameras switch. If it cannot be loaded, the
   * new model keeps running (better than none) and the error is thrown.
   */
  private async rollBack(generation: number, failed: VerifiedTarget, why: string): Promise<ActivationOutcome> {
    const failedRef = modelRefOf(failed);
    const kg = this.pointer.knownGood;
    let reason = why;
    if (kg === null || kg === failedRef.sha256) {
      reason = `${why}; no known-good model to go back to: running no model`;
      await this.pipeline.deactivate();
      await this.writePointer({ acceptedGeneration: generation, active: null, knownGood: null, rolledBack: { generation, target: failedRef, reason } });
      this.running = null;
      this.reporter.setAccepted(generation, null);
    } else {
      let prepared: PreparedModel;
      let back: VerifiedTarget;
      try {
        const stored = await this.loadStored(kg);
        back = stored.target;
        prepared = await this.pipeline.prepare(stored.model);
      } catch (err) {
        throw new Error(`${why}; the known-good model ${kg} could not be loaded, so this model keeps running: ${(err as Error).message}`);
      }
      let switched = false;
      try {
        await this.writePointer({ acceptedGeneration: generation, active: kg, knownGood: kg, rolledBack: { generation, target: failedRef, reason } });
        await this.pipeline.switchTo(prepared);
        switched = true;
      } finally {
        if (!switched) await this.pipeline.discard(prepared);
      }
      this.setRunning(generation, back);
    }
    this.log.warn({ generation, model: failedRef, reason }, 'rolled back to the known-good model');
    this.reporter.setDeployment({ phase: 'rolled-back', generation, target: failedRef, reason });
    await this.prune();
    return { kind: 'rolled-back', reason };
  }

  /** A stored model with its target, checked again: it describes this file (the store holds only targets checked against the signed metadata), and the hash. */
  private async loadStored(sha: string): Promise<{ target: VerifiedTarget; model: ModelToRun }> {
    const decoded = decodeStoredTarget(await this.store.readTarget(sha));
    if (!decoded.ok) throw new Error(`stored target document invalid: ${decoded.error}`);
    const target = decoded.value;
    if (target.hashes.sha256 !== sha) throw new Error(`stored target describes ${target.hashes.sha256}, not ${sha}`);
    const modelPath = await this.store.verify(sha);
    return { target, model: { modelPath, target } };
  }

  /** The name and version of a stored model, for reports; null when its target cannot be read. */
  private async refOf(sha: string | null): Promise<ModelRef | null> {
    if (sha === null) return null;
    try {
      const decoded = decodeStoredTarget(await this.store.readTarget(sha));
      return decoded.ok ? modelRefOf(decoded.value) : null;
    } catch {
      return null;
    }
  }

  private setRunning(generation: number, target: VerifiedTarget): void {
    this.running = target;
    this.reporter.setAccepted(generation, modelRefOf(target));
  }

  /** The phase of a generation that is done: rolled-back when it was, else what runs. */
  private reportSettled(generation: number, phase: 'active' | 'idle'): void {
    const rb = this.pointer.rolledBack;
    if (rb && rb.generation === generation) this.reporter.setDeployment({ phase: 'rolled-back', generation, target: rb.target, reason: rb.reason });
    else this.reporter.setDeployment({ phase: this.running ? phase : 'idle', generation, target: this.running ? modelRefOf(this.running) : null });
  }

  private async writePointer(next: Parameters<ModelStore['writeActive']>[0]): Promise<void> {
    this.pointer = await this.store.writeActive(next);
  }

  /** Keeps the active and the known-good model, and the newest others up to the cache size; a failure here costs disk, never the model. */
  private async prune(): Promise<void> {
    const keep = new Set([this.pointer.active, this.pointer.knownGood, ...(this.opts.retain?.() ?? [])].filter((s): s is string => s !== null));
    try {
      const removed = await this.store.collectGarbage(keep, this.opts.maxCachedModels);
      if (removed.length > 0) this.log.info({ removed }, 'old models removed from the cache');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'model cache clean-up failed');
    }
  }
}
