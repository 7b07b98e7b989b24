import { modelRefOf, type ModelRef } from '@perch/shared';
import type { InferencePipeline } from '../inference/inference-pipeline.js';
import type { Logger } from '../log/logger.js';
import type { MessageHandler } from '../mqtt/dispatcher.js';
import type { ModelStore } from '../model-store/model-store.js';
import { diskFullReason, isDiskFull } from '../storage/disk-full.js';
import { fileSha256 } from '../storage/file-sha256.js';
import { DownloadError, type ArtifactDownloader } from './artifact-downloader.js';
import type { DeploymentConfig } from './deployment-config.js';
import { ModelActivation, type ActivationOutcome } from './model-activation.js';
import { outcomeOf, RefusedByMetadata, Rejected, Superseded } from './refusals.js';
import type { ReportedStateReporter } from './reported-state-reporter.js';
import { ShadowDeployment } from './shadow-deployment.js';
import { TrustError, type TrustedMetadata } from '../trust/trusted-metadata.js';
import {
  checkAgainstSignedTarget,
  checkDesiredState,
  checkDowngrade,
  decodeDesiredState,
  type DesiredRole,
  type ReceivedDesiredState,
  type VerifiedTarget,
} from './signed-documents.js';

export interface DeploymentOptions {
  deviceId: string;
  /** the device's TUF metadata: the desired role's keys, and the signed targets */
  trust: Pick<TrustedMetadata, 'refresh' | 'targetInfo' | 'checkDesiredSignatures'>;
  /** models kept on disk (see ModelStore.collectGarbage); default 3 */
  maxCachedModels?: number;
  /** the health window and its thresholds */
  config: DeploymentConfig;
}

type Job =
  | { kind: 'restore'; done: () => void }
  | { kind: 'apply'; desired: ReceivedDesiredState }
  /** the health window of a model restored inside it */
  | { kind: 'watch'; generation: number }
  /** the challenger of a state whose champion is carried out already (a redelivery, e.g. after a restart) */
  | { kind: 'shadow'; desired: ReceivedDesiredState };

/** How a download reports on itself: the champion's in the deployment phases, the challenger's not at all. */
interface DownloadReport {
  downloading(total: number): void;
  progress(bytes: number, total: number): void;
  verifying(): void;
}

const SILENT: DownloadReport = { downloading: () => undefined, progress: () => undefined, verifying: () => undefined };

/**
 * Converges the device on its signed desired state. Jobs run one at a time;
 * a newer desired state aborts the one in progress (a download stops at
 * once, a health window ends unjudged). A refused state leaves the running
 * model and acceptedGeneration as they were and is reported as 'rejected'
 * with the reason; a model that fails its health window is 'rolled-back'
 * and that generation is not tried again. Switching, the pointer on disk
 * and the health window are ModelActivation's. The challenger (shadow
 * mode) is ShadowDeployment's: it converges once the champion has settled,
 * and its failures never touch the champion.
 */
export class DeploymentManager {
  private readonly activation: ModelActivation;
  private readonly shadow: ShadowDeployment;
  /** the challenger of the state being worked on: kept in the cache before it runs, so promoting it never needs a download */
  private wantedShadow: string | null = null;
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
  ) {
    this.activation = new ModelActivation(
      {
        config: opts.config,
        maxCachedModels: opts.maxCachedModels ?? 3,
        retain: () => [this.shadow.model?.target.hashes.sha256 ?? null, this.wantedShadow].filter((s): s is string => s !== null),
      },
      store,
      pipeline,
      reporter,
      log,
    );
    this.shadow = new ShadowDeployment(
      pipeline,
      reporter,
      {
        verify: (desired) => this.signedTarget(desired, 'shadow'),
        fetch: (target, signal) => this.localOrDownload(target, signal, SILENT),
      },
      log.child({ role: 'challenger' }),
    );
  }

  private get acceptedGeneration(): number {
    return this.activation.acceptedGeneration;
  }

  private get active(): VerifiedTarget | null {
    return this.activation.active;
  }

  /** The dispatcher's handler for `desired`. */
  handler(): MessageHandler<ReceivedDesiredState> {
    return {
      kind: 'desired',
      decode: (payload) => decodeDesiredState(payload),
      handle: (desired) => this.onDesired(desired),
      onEmpty: () => this.log.info('desired state cleared on the broker; keeping the current state'),
    };
  }

  /**
   * Brings back the last good model from the store, with no control plane
   * needed; resolves once it runs (a health window it resumes goes on as a job).
   */
  start(): Promise<void> {
    this.stopped = false;
    return new Promise((done) => this.enqueue({ kind: 'restore', done }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.queued?.kind === 'restore') this.queued.done();
    this.queued = null;
    this.controller?.abort(new Superseded('agent stopping'));
    await this.drain;
  }

  /** Resolves when no job is queued or running; for tests and shutdown. */
  async idle(): Promise<void> {
    while (this.drain) await this.drain;
  }

  get state(): { acceptedGeneration: number; active: ModelRef | null } {
    return { acceptedGeneration: this.acceptedGeneration, active: this.active ? modelRefOf(this.active) : null };
  }

  /**
   * `refreshed`: the trust metadata was brought up to date for this state
   * already. A signature by a key the device does not know yet may be by a
   * key a newer root brought in: the root walk runs once, then the state is
   * judged again.
   */
  onDesired(desired: ReceivedDesiredState, refreshed = false): void {
    const d = desired.envelope.signed;
    const target = d.active ? modelRefOf(d.active) : null;
    const check = checkDesiredState(desired, {
      deviceId: this.opts.deviceId,
      signatures: (envelope) => this.opts.trust.checkDesiredSignatures(envelope),
      acceptedGeneration: this.acceptedGeneration,
    });
    if (!check.ok && check.signature && !refreshed) {
      this.opts.trust.refresh().then(
        () => this.onDesired(desired, true),
        (err: Error) => this.refuse(d.generation, target, `${check.reason}; trust metadata not refreshed: ${err.message}`),
      );
      return;
    }
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
    const rolledBack = this.activation.rolledBack;
    if (rolledBack?.generation === d.generation) {
      // Its model failed the health window here: restated, never tried again. A newer generation may name it again.
      this.log.info({ generation: d.generation }, 'desired state was rolled back; not tried again');
      this.reporter.setDeployment({ phase: 'rolled-back', generation: d.generation, target: rolledBack.target, reason: rolledBack.reason });
      this.shadowLater(desired);
      return;
    }
    if (d.generation === this.acceptedGeneration && this.converged && this.working === null) {
      // Already carried out (a retained redelivery after reconnect): restate it; only a challenger not running yet is worked on.
      this.log.debug({ generation: d.generation }, 'desired state already applied');
      this.reporter.setDeployment({ phase: this.active ? 'active' : 'idle', generation: d.generation, target: this.state.active });
      this.shadowLater(desired);
      return;
    }
    this.log.info({ generation: d.generation, target }, 'desired state accepted for work');
    this.reporter.setDeployment({ phase: 'queued', generation: d.generation, target });
    this.enqueue({ kind: 'apply', desired });
  }

  /** The challenger of a state whose champion is carried out, when it does not run as the state says (after a restart, or it failed). */
  private shadowLater(desired: ReceivedDesiredState): void {
    if (this.working === null && this.shadow.pending(desired)) this.enqueue({ kind: 'shadow', desired });
  }

  private refuse(generation: number, target: ModelRef | null, reason: string): void {
    this.log.warn({ generation, reason }, 'desired state rejected');
    this.reporter.setDeployment({ phase: 'rejected', generation, target, reason });
  }

  private enqueue(job: Job): void {
    this.queued = job;
    const generation = jobGeneration(job);
    if (generation !== null) this.working = generation;
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
        else if (job.kind === 'watch') await this.watch(job.generation, controller.signal);
        else if (job.kind === 'shadow') await this.shadow.converge(job.desired, controller.signal);
        else await this.apply(job.desired, controller.signal);
      } catch (err) {
        this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'deployment job failed unexpectedly');
      } finally {
        this.controller = null;
        if (job.kind === 'restore') job.done();
        if (this.working === jobGeneration(job) && this.queued === null) this.working = null;
      }
    }
  }

  private async restore(): Promise<void> {
    const r = await this.activation.restore();
    this.converged = r.settled;
    if (r.resumeWindow) this.enqueue({ kind: 'watch', generation: this.acceptedGeneration });
  }

  private async watch(generation: number, signal: AbortSignal): Promise<void> {
    try {
      this.settle(generation, await this.activation.resumeHealthWindow(signal));
    } catch (err) {
      this.fail(generation, null, err);
    }
  }

  private async apply(desired: ReceivedDesiredState, signal: AbortSignal): Promise<void> {
    const d = desired.envelope.signed;
    const generation = d.generation;
    if (generation < this.acceptedGeneration) {
      // Checked on arrival too; this covers a state that was queued before a newer one was carried out.
      return this.refuse(generation, d.active ? modelRefOf(d.active) : null, `replay: desired state generation ${generation} is older than the accepted generation ${this.acceptedGeneration}`);
    }
    this.wantedShadow = d.shadow?.hashes.sha256 ?? null;
    if (d.active === null) {
      try {
        await this.activation.runNothing(generation);
        this.settle(generation, { kind: 'active' });
      } catch (err) {
        return this.fail(generation, null, err);
      }
      return this.shadow.converge(desired, signal);
    }
    const ref = modelRefOf(d.active);
    let outcome: ActivationOutcome;
    try {
      const target = await this.signedTarget(desired, 'active');
      const sha = target.hashes.sha256;
      if (this.active?.hashes.sha256 === sha && this.pipeline.activeModel) {
        // Same artifact, newer generation (e.g. a re-signed target): nothing to load.
        outcome = await this.activation.reaffirm(generation, target, signal);
      } else {
        // A promoted challenger is in the store already: nothing is downloaded.
        const modelPath = await this.localOrDownload(target, signal, {
          downloading: (total) => this.reporter.setDeployment({ phase: 'downloading', generation, target: ref, progress: { bytes: 0, total } }),
          progress: (bytes, total) => this.reporter.setProgress(generation, ref, bytes, total),
          verifying: () => this.reporter.setDeployment({ phase: 'verifying', generation, target: ref }),
        });
        if (signal.aborted) throw new Superseded();
        this.reporter.setDeployment({ phase: 'ready', generation, target: ref });
        outcome = await this.activation.activate(generation, target, modelPath, signal, () => this.shadow.suspend(desired));
      }
    } catch (err) {
      const how = outcomeOf(err, signal);
      if (how === 'superseded') return void this.log.info({ generation }, 'deployment superseded');
      if (how === 'metadata') return this.refuse(generation, ref, (err as Error).message);
      if (how === 'rejected') {
        const reason = (err as Error).message;
        this.rejected = { generation, reason, target: ref };
        return this.refuse(generation, ref, reason);
      }
      return this.fail(generation, ref, err);
    }
    this.settle(generation, outcome);
    // The challenger is compared with whatever champion the generation ended on (a rolled-back one's known-good model too).
    if (outcome.kind !== 'superseded' && !signal.aborted) await this.shadow.converge(desired, signal);
  }

  /** The store's copy, checked again, or else a download (which copies the chunks the store already has). */
  private async localOrDownload(target: VerifiedTarget, signal: AbortSignal, report: DownloadReport): Promise<string> {
    const sha = target.hashes.sha256;
    if (await this.store.has(sha)) {
      report.verifying();
      try {
        return await this.store.verify(sha);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'stored copy is damaged; downloading again');
      }
    }
    return this.download(target, signal, report);
  }

  /**
   * The model the desired state names, as the freshly verified TUF targets
   * metadata lists it, and not a downgrade unless the state is a signed
   * rollback. Metadata that cannot be fetched is a failure (retried with the
   * next state or reconnect); metadata that fails its checks is a refusal.
   */
  private async signedTarget(desired: ReceivedDesiredState, role: DesiredRole): Promise<VerifiedTarget> {
    const d = desired.envelope.signed;
    const named = d[role];
    if (!named) throw new Error('no model named');
    try {
      await this.opts.trust.refresh();
    } catch (err) {
      if (err instanceof TrustError && err.failure !== 'unavailable') throw new RefusedByMetadata(`trust metadata: ${err.message}`);
      throw err;
    }
    const signed = checkAgainstSignedTarget(desired.rawSigned, await this.opts.trust.targetInfo(named.path), role);
    if (!signed.ok) throw new Rejected(signed.reason);
    // A challenger never drives anything, so an older one (the champion it replaced, say) is no downgrade.
    if (role === 'shadow') return signed.target;
    const downgrade = checkDowngrade(signed.target, this.active, d.rollback === true);
    if (!downgrade.ok) throw new Rejected(downgrade.reason);
    return signed.target;
  }

  /** The job for `generation` ended its way (active, rolled back, idle): a redelivery of it is only restated. */
  private settle(generation: number, outcome: ActivationOutcome): void {
    if (outcome.kind === 'superseded') return void this.log.info({ generation }, 'deployment superseded');
    this.converged = true;
    if (this.rejected && this.rejected.generation <= generation) this.rejected = null;
    if (outcome.kind === 'active') this.log.info({ generation, model: this.state.active }, 'deployment active');
  }

  /** Could not be done; the model running before goes on. A full disk says so first, whatever layer hit it. */
  private fail(generation: number, target: ModelRef | null, err: unknown): void {
    const reason = isDiskFull(err) ? diskFullReason(err) : (err as Error).message;
    this.log.warn({ generation, reason }, 'deployment failed');
    this.reporter.setDeployment({ phase: 'failed', generation, target, reason });
  }

  private async download(target: VerifiedTarget, signal: AbortSignal, report: DownloadReport): Promise<string> {
    const sha = target.hashes.sha256;
    const length = target.length;
    const partPath = this.store.partPath(sha);
    report.downloading(length);
    try {
      const result = await this.downloader.download({
        sha256: sha,
        length,
        partPath,
        signal,
        onProgress: (bytes, total) => report.progress(bytes, total),
        // Signed with the target: every chunk is checked against it, and chunks of models already here are copied.
        chunkManifest: target.custom.chunkManifest ?? null,
        localSources: await this.store.chunkSources().catch(() => []),
      });
      if (signal.aborted) throw new Superseded();
      report.verifying();
      const actual = await fileSha256(partPath);
      if (actual.length !== length) throw new Rejected(`artifact is ${actual.length} bytes, the signed length is ${length}`);
      if (actual.sha256 !== sha) throw new Rejected(`artifact sha256 ${actual.sha256} does not match the signed sha256 ${sha}`);
      const installed = await this.store.install(partPath, sha, target);
      if (result.manifestBytes) {
        await this.store
          .writeChunkManifest(sha, result.manifestBytes)
          .catch((err: Error) => this.log.warn({ err: err.message }, 'chunk manifest not kept; the next version downloads in full'));
      }
      return installed;
    } catch (err) {
      // Refused bytes are thrown away; a download cut short (superseded, the link gone, too many
      // timeouts) keeps its part file and journal, and the next attempt resumes from them.
      if (err instanceof Rejected || (err instanceof DownloadError && err.outcome === 'rejected')) await this.store.discardPart(sha).catch(() => undefined);
      throw err;
    }
  }
}

function jobGeneration(job: Job): number | null {
  if (job.kind === 'apply' || job.kind === 'shadow') return job.desired.envelope.signed.generation;
  return job.kind === 'watch' ? job.generation : null;
}
