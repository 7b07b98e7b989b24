import { DEFAULT_SHADOW_SAMPLE_RATE, modelRefOf, type ShadowPhase } from '@perch/shared';
import { challengerInput } from '../inference/challenger-input.js';
import type { InferencePipeline, ModelToRun, PreparedModel } from '../inference/inference-pipeline.js';
import { ModelLoadError } from '../inference/inference-runner.js';
import type { Logger } from '../log/logger.js';
import { diskFullReason, isDiskFull } from '../storage/disk-full.js';
import { smokeTest } from './golden-smoke-test.js';
import { outcomeOf, Rejected, Superseded } from './refusals.js';
import type { ReportedStateReporter } from './reported-state-reporter.js';
import type { ReceivedDesiredState, VerifiedTarget } from './signed-documents.js';

/** What the challenger needs from the deployment: the same checks and the same store as the champion's. */
export interface ShadowSources {
  /** the challenger the state names, as the freshly verified TUF targets list it; throws Rejected or RefusedByMetadata */
  verify(desired: ReceivedDesiredState): Promise<VerifiedTarget>;
  /** the model file: the store's checked copy, or downloaded and installed there (chunks of installed models reused) */
  fetch(target: VerifiedTarget, signal: AbortSignal): Promise<string>;
}

type ShadowPipeline = Pick<InferencePipeline, 'on' | 'activeModel' | 'shadowModel' | 'shadowSampleRate' | 'prepareShadow' | 'startShadow' | 'setShadowSampleRate' | 'stopShadow' | 'discard'>;

/**
 * Converges the challenger (the desired state's `shadow`) once the
 * champion has settled: checked against the signed targets exactly as the
 * champion is, fetched into the same model store, loaded in a worker of its
 * own and run on its golden input, then fed a sample of the champion's
 * frames. Whatever goes wrong with it is reported in the reported state's
 * `shadow` and never touches the champion. A challenger rejected for a
 * generation is not worked on again for it; a failed one is tried again
 * when the state comes again.
 */
export class ShadowDeployment {
  /** the challenger rejected last, by generation and sha256 */
  private rejected: { generation: number; sha256: string } | null = null;
  /** the generation the running challenger was last confirmed for */
  private generation = 0;

  constructor(
    private readonly pipeline: ShadowPipeline,
    private readonly reporter: Pick<ReportedStateReporter, 'setShadow' | 'shadowStatus'>,
    private readonly sources: ShadowSources,
    private readonly log: Logger,
  ) {
    pipeline.on('shadow-died', (err, model) => void this.died(err, model));
  }

  /** The challenger running, if any (the cache keeps its file). */
  get model(): ModelToRun | null {
    return this.pipeline.shadowModel;
  }

  /** Whether converge() would change anything for a state that is otherwise carried out already (a redelivery). */
  pending(desired: ReceivedDesiredState): boolean {
    const d = desired.envelope.signed;
    const want = d.shadow ?? null;
    const running = this.pipeline.shadowModel;
    if (!want) return running !== null || this.reporter.shadowStatus !== null;
    if (this.rejected?.generation === d.generation && this.rejected.sha256 === want.hashes.sha256) return false;
    return running?.target.hashes.sha256 !== want.hashes.sha256 || this.generation !== d.generation || this.pipeline.shadowSampleRate !== sampleRateOf(desired);
  }

  /** Makes the challenger the one `desired` names (or none). */
  async converge(desired: ReceivedDesiredState, signal: AbortSignal): Promise<void> {
    const d = desired.envelope.signed;
    const want = d.shadow ?? null;
    if (!want) return this.clear();
    const sha = want.hashes.sha256;
    const rate = sampleRateOf(desired);
    const report = (phase: ShadowPhase, reason?: string) =>
      this.reporter.setShadow({ generation: d.generation, target: modelRefOf(want), phase, sampleRate: rate, ...(reason === undefined ? {} : { reason }) });
    if (this.rejected?.generation === d.generation && this.rejected.sha256 === sha) return;
    const same = () => this.pipeline.shadowModel?.target.hashes.sha256 === sha;
    if (!same()) report('preparing');
    try {
      const target = await this.sources.verify(desired);
      if (signal.aborted) throw new Superseded();
      if (same()) {
        this.pipeline.setShadowSampleRate(rate);
      } else {
        // Only one challenger at a time, and only the one reported.
        await this.pipeline.stopShadow();
        const champion = this.pipeline.activeModel;
        if (!champion) throw new Rejected('no champion runs to compare the challenger with');
        const input = challengerInput(champion.target.custom.metadata, target.custom.metadata);
        if (input.kind === 'incompatible') throw new Rejected(input.reason);
        const modelPath = await this.sources.fetch(target, signal);
        if (signal.aborted) throw new Superseded();
        await this.start({ modelPath, target }, rate, signal);
      }
      this.generation = d.generation;
      report('running');
    } catch (err) {
      const outcome = outcomeOf(err, signal);
      if (outcome === 'superseded') return void this.log.info({ generation: d.generation }, 'challenger superseded');
      const reason = isDiskFull(err) ? diskFullReason(err) : (err as Error).message;
      if (outcome === 'rejected') this.rejected = { generation: d.generation, sha256: sha };
      this.log.warn({ generation: d.generation, challenger: modelRefOf(want), reason }, outcome === 'failed' ? 'challenger failed' : 'challenger rejected');
      report(outcome === 'failed' ? 'failed' : 'rejected', reason);
    }
  }

  /**
   * The champion is about to change: the challenger stops, so that nothing
   * competes with the new champion's health window (and a promoted
   * challenger does not run twice); it starts again once the champion has
   * settled, from the store.
   */
  async suspend(desired: ReceivedDesiredState): Promise<void> {
    const d = desired.envelope.signed;
    if (!d.shadow) return this.clear();
    await this.pipeline.stopShadow();
    if (this.rejected?.generation === d.generation && this.rejected.sha256 === d.shadow.hashes.sha256) return;
    this.reporter.setShadow({ generation: d.generation, target: modelRefOf(d.shadow), phase: 'preparing', sampleRate: sampleRateOf(desired), reason: 'waiting for the champion to settle' });
  }

  /** No challenger: its worker stops and the reported state names none. */
  async clear(): Promise<void> {
    await this.pipeline.stopShadow();
    this.generation = 0;
    if (this.reporter.shadowStatus) this.reporter.setShadow(null);
  }

  /** Its own worker, its golden input there, and only then the champion's frames. */
  private async start(model: ModelToRun, rate: number, signal: AbortSignal): Promise<void> {
    let prepared: PreparedModel;
    try {
      prepared = await this.pipeline.prepareShadow(model);
    } catch (err) {
      if (err instanceof ModelLoadError) throw new Rejected(err.message);
      throw err;
    }
    let started = false;
    try {
      const ref = modelRefOf(model.target);
      const smoke = await smokeTest(prepared.runner, model.target);
      if (smoke.outcome === 'failed') throw new Rejected(smoke.reason);
      if (smoke.outcome === 'no-golden') this.log.warn({ challenger: ref }, 'the challenger has no golden input (registered before golden inputs); running it without the output check');
      else this.log.info({ challenger: ref, maxDiff: smoke.maxDiff, runMs: smoke.runMs }, 'challenger golden input matches');
      if (signal.aborted) throw new Superseded();
      await this.pipeline.startShadow(prepared, rate);
      started = true;
    } finally {
      if (!started) await this.pipeline.discard(prepared);
    }
  }

  /** Its worker died: stopped, and reported failed; the state coming again starts it afresh. */
  private async died(err: Error, model: ModelToRun): Promise<void> {
    await this.pipeline.stopShadow(model);
    const s = this.reporter.shadowStatus;
    if (s && s.target.sha256 === model.target.hashes.sha256 && s.phase === 'running') {
      this.reporter.setShadow({ generation: s.generation, target: s.target, phase: 'failed', sampleRate: s.sampleRate, reason: `the challenger's worker died: ${err.message}` });
    }
  }
}

function sampleRateOf(desired: ReceivedDesiredState): number {
  return desired.envelope.signed.shadowSampleRate ?? DEFAULT_SHADOW_SAMPLE_RATE;
}
