import { modelRefOf, type ModelRef, type PublicKey } from '@perch/shared';
import { ModelLoadError } from '../inference/inference-runner.js';
import type { InferencePipeline } from '../inference/inference-pipeline.js';
import type { Logger } from '../log/logger.js';
import type { MessageHandler } from '../mqtt/dispatcher.js';
import type { ModelStore } from '../model-store/model-store.js';
import { fileSha256 } from '../storage/file-sha256.js';
import { DownloadError, type ArtifactDownloader } from './artifact-downloader.js';
import type { ReportedStateReporter } from './reported-state-reporter.js';
import { checkDesiredState, checkModelTarget, decodeDesiredState, decodeModelTarget, type ReceivedDesiredState, type VerifiedTarget } from './signed-documents.js';

export interface DeploymentOptions {
  deviceId: string;
  trustedKeys: readonly PublicKey[];
  /** models kept on disk (see ModelStore.collectGarbage); default 3 */
  maxCachedModels?: number;
}

/** Refused: the input is wrong and retrying it cannot help (bad hash, bad model). */
class Rejected extends Error {}

class Superseded extends Error {}

type Job = { kind: 'restore' } | { kind: 'apply'; desired: ReceivedDesiredState };

/**
 * Converges the device on its signed desired state. Jobs run one at a time;
 * a newer desired state aborts the one in progress (a download stops at
 * once). A refused state leaves the running model and acceptedGeneration as
 * they were and is reported as 'rejected' with the reason.
 */
export class DeploymentManager {
  private acceptedGeneration = 0;
  private active: VerifiedTarget | null = null;
  /** generation being worked on (queued or running) */
  private working: number | null = null;
  /** last generation refused after its signature was good (bad artifact, bad model): not fetched again */
  private rejected: { generation: number; reason: string; target: ModelRef | null } | null = null;
  /** whether the device runs what acceptedGeneration asked for */
  private converged = false;
  private queued: Job | null = null;
  private controller: AbortController | null = null;
  private drain: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly opts: DeploymentOptions,
    private readonly store: ModelStore,
    private readonly downloader: ArtifactDownloader,
    private readonly pipeline: InferencePipeline,
    private readonly reporter: ReportedStateReporter,
    private readonly log: Logger,
  ) {}

  /** The dispatcher's handler for `desired`. */
  handler(): MessageHandler<ReceivedDesiredState> {
    return {
      kind: 'desired',
      decode: (payload) => decodeDesiredState(payload),
      handle: (desired) => this.onDesired(desired),
      onEmpty: () => this.log.info('desired state cleared on the broker; keeping the current state'),
    };
  }

  /** Brings back the last good model from the store, with no control plane needed. */
  start(): Promise<void> {
    this.stopped = false;
    this.enqueue({ kind: 'restore' });
    return this.idle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queued = null;
    this.controller?.abort(new Superseded('agent stopping'));
    await this.drain;
  }

  /** Resolves when no job is queued or running; for tests and shutdown. */
  async idle(): Promise<void> {
    while (this.drain) await this.drain;
  }

  get state(): { acceptedGeneration: number; active: ModelRef | null } {
    return { acceptedGeneration: this.acceptedGeneration, active: this.active ? modelRefOf(this.active.envelope.signed) : null };
  }

  onDesired(desired: ReceivedDesiredState): void {
    const d = desired.envelope.signed;
    const target = d.active ? modelRefOf(d.active.signed) : null;
    const check = checkDesiredState(desired, {
      deviceId: this.opts.deviceId,
      trustedKeys: this.opts.trustedKeys,
      acceptedGeneration: this.acceptedGeneration,
    });
    if (!check.ok) return this.refuse(d.generation, target, check.reason);
    if (this.working !== null) {
      if (d.generation === this.working) return void this.log.debug({ generation: d.generation }, 'desired state already in progress');
      if (d.generation < this.working) {
        return this.refuse(d.generation, target, `replay: desired state generation ${d.generation} is older than generation ${this.working} in progress`);
      }
    }
    if (this.rejected?.generation === d.generation) {
      // The same refused document again (e.g. retained, after a reconnect): say so again, fetch nothing.
      return this.refuse(d.generation, target, this.rejected.reason);
    }
    if (d.generation === this.acceptedGeneration && this.converged && this.working === null) {
      // Already carried out (a retained redelivery after reconnect): restate it, do nothing else.
      this.log.debug({ generation: d.generation }, 'desired state already applied');
      this.reporter.setDeployment({ phase: this.active ? 'active' : 'idle', generation: d.generation, target: this.state.active });
      return;
    }
    this.log.info({ generation: d.generation, target }, 'desired state accepted for work');
    this.enqueue({ kind: 'apply', desired });
  }

  private refuse(generation: number, target: ModelRef | null, reason: string): void {
    this.log.warn({ generation, reason }, 'desired state rejected');
    this.reporter.setDeployment({ phase: 'rejected', generation, target, reason });
  }

  private enqueue(job: Job): void {
    this.queued = job;
    if (job.kind === 'apply') this.working = job.desired.envelope.signed.generation;
    this.controller?.abort(new Superseded('superseded by a newer desired state'));
    if (!this.drain) {
      this.drain = this.run().finally(() => {
        this.drain = null;
      });
    }
  }

  private async run(): Promise<void> {
    for (let job = this.queued; job && !this.stopped; job = this.queued) {
      this.queued = null;
      const controller = new AbortController();
      this.controller = controller;
      try {
        if (job.kind === 'restore') await this.restore();
        else await this.apply(job.desired, controller.signal);
      } catch (err) {
        this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'deployment job failed unexpectedly');
      } finally {
        this.controller = null;
        if (job.kind === 'apply' && this.working === job.desired.envelope.signed.generation && this.queued === null) this.working = null;
      }
    }
  }

  private async restore(): Promise<void> {
    let pointer;
    try {
      pointer = await this.store.readActive();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'active model pointer unreadable; starting with no model');
    }
    if (!pointer) {
      this.converged = true;
      this.reporter.setDeployment({ phase: 'idle', generation: 0, target: null });
      return;
    }
    this.acceptedGeneration = pointer.acceptedGeneration;
    this.reporter.setAccepted(this.acceptedGeneration, null);
    if (pointer.active === null) {
      this.converged = true;
      this.reporter.setDeployment({ phase: 'idle', generation: pointer.acceptedGeneration, target: null });
      return;
    }
    const sha = pointer.active;
    try {
      const decoded = decodeModelTarget(await this.store.readTarget(sha));
      if (!decoded.ok) throw new Error(`stored target document invalid: ${decoded.error}`);
      const target = decoded.value;
      // No expiry check here: a box cut off from its control plane keeps running its last good model.
      const check = checkModelTarget(target, this.opts.trustedKeys, { checkExpiry: false });
      if (!check.ok) throw new Error(check.reason);
      if (target.envelope.signed.hashes.sha256 !== sha) throw new Error(`stored target describes ${target.envelope.signed.hashes.sha256}, not ${sha}`);
      const modelPath = await this.store.verify(sha);
      await this.pipeline.activate({ modelPath, target: target.envelope.signed });
      this.active = target;
      this.converged = true;
      this.reporter.setAccepted(this.acceptedGeneration, modelRefOf(target.envelope.signed));
      this.reporter.setDeployment({ phase: 'active', generation: this.acceptedGeneration, target: modelRefOf(target.envelope.signed) });
      this.log.info({ model: modelRefOf(target.envelope.signed), generation: this.acceptedGeneration }, 'restored the active model from the store');
    } catch (err) {
      const reason = `stored active model ${sha} not restored: ${(err as Error).message}`;
      this.log.error({ reason }, 'running no model');
      this.reporter.setDeployment({ phase: 'failed', generation: this.acceptedGeneration, target: null, reason });
    }
  }

  private async apply(desired: ReceivedDesiredState, signal: AbortSignal): Promise<void> {
    const d = desired.envelope.signed;
    const generation = d.generation;
    if (generation < this.acceptedGeneration) {
      // Checked on arrival too; this covers a state that was queued before a newer one was carried out.
      return this.refuse(generation, d.active ? modelRefOf(d.active.signed) : null, `replay: desired state generation ${generation} is older than the accepted generation ${this.acceptedGeneration}`);
    }
    if (d.active === null || desired.rawTarget === null) {
      await this.pipeline.deactivate();
      await this.commit(generation, null);
      this.reporter.setDeployment({ phase: 'idle', generation, target: null });
      return;
    }
    const target: VerifiedTarget = { envelope: d.active, raw: desired.rawTarget };
    const t = d.active.signed;
    const ref = modelRefOf(t);
    const sha = t.hashes.sha256;
    const report = (phase: 'downloading' | 'verifying' | 'loading') => this.reporter.setDeployment({ phase, generation, target: ref });
    try {
      if (this.active?.envelope.signed.hashes.sha256 === sha && this.pipeline.activeModel) {
        // Same artifact, newer generation (e.g. a re-signed target): nothing to load.
        await this.commit(generation, target);
        this.reporter.setDeployment({ phase: 'active', generation, target: ref });
        return;
      }
      let modelPath: string | null = null;
      if (await this.store.has(sha)) {
        report('verifying');
        try {
          modelPath = await this.store.verify(sha);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'stored copy is damaged; downloading again');
        }
      }
      if (modelPath === null) modelPath = await this.download(sha, t.length, target, signal, () => report('verifying'), generation, ref);
      if (signal.aborted) throw new Superseded();
      report('loading');
      try {
        await this.pipeline.activate({ modelPath, target: t });
      } catch (err) {
        if (err instanceof ModelLoadError) throw new Rejected(err.message);
        throw err;
      }
      const replaced = this.active?.envelope.signed.hashes.sha256;
      await this.commit(generation, target);
      this.reporter.setDeployment({ phase: 'active', generation, target: ref });
      this.log.info({ generation, model: ref }, 'deployment active');
      await this.pruneCache(sha, replaced);
    } catch (err) {
      if (err instanceof Superseded || signal.aborted) {
        this.log.info({ generation }, 'deployment superseded');
        return;
      }
      const rejected = err instanceof Rejected || (err instanceof DownloadError && err.outcome === 'rejected');
      const reason = (err as Error).message;
      if (rejected) {
        this.rejected = { generation, reason, target: ref };
        this.refuse(generation, ref, reason);
      } else {
        this.log.warn({ generation, reason }, 'deployment failed');
        this.reporter.setDeployment({ phase: 'failed', generation, target: ref, reason });
      }
    }
  }

  private async download(
    sha: string,
    length: number,
    target: VerifiedTarget,
    signal: AbortSignal,
    verifying: () => void,
    generation: number,
    ref: ModelRef,
  ): Promise<string> {
    const partPath = this.store.partPath(sha);
    this.reporter.setDeployment({ phase: 'downloading', generation, target: ref, progress: { bytes: 0, total: length } });
    try {
      await this.downloader.download({ sha256: sha, length, partPath, signal, onProgress: (bytes, total) => this.reporter.setProgress(generation, ref, bytes, total) });
      if (signal.aborted) throw new Superseded();
      verifying();
      const actual = await fileSha256(partPath);
      if (actual.length !== length) throw new Rejected(`artifact is ${actual.length} bytes, the signed length is ${length}`);
      if (actual.sha256 !== sha) throw new Rejected(`artifact sha256 ${actual.sha256} does not match the signed sha256 ${sha}`);
      return await this.store.install(partPath, sha, target.raw);
    } catch (err) {
      // Refused bytes are thrown away; a download cut short (superseded, the link gone, too many
      // timeouts) keeps its part file and journal, and the next attempt resumes from them.
      if (err instanceof Rejected || (err instanceof DownloadError && err.outcome === 'rejected')) await this.store.discardPart(sha).catch(() => undefined);
      throw err;
    }
  }

  /** Keeps the new model and the one it replaced (to fall back on); a failure here costs disk, never the model. */
  private async pruneCache(active: string, replaced: string | undefined): Promise<void> {
    const keep = new Set([active, ...(replaced ? [replaced] : [])]);
    try {
      const removed = await this.store.collectGarbage(keep, this.opts.maxCachedModels ?? 3);
      if (removed.length > 0) this.log.info({ removed }, 'old models removed from the cache');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'model cache clean-up failed');
    }
  }

  /** Records the new state on disk before claiming it, so a reboot resumes from it. */
  private async commit(generation: number, target: VerifiedTarget | null): Promise<void> {
    const sha = target ? target.envelope.signed.hashes.sha256 : null;
    await this.store.writeActive({ acceptedGeneration: generation, active: sha });
    this.acceptedGeneration = generation;
    this.active = target;
    this.converged = true;
    if (this.rejected && this.rejected.generation <= generation) this.rejected = null;
    this.reporter.setAccepted(generation, target ? modelRefOf(target.envelope.signed) : null);
  }
}
