import type { InferencePipeline, ModelToRun } from '../inference/inference-pipeline.js';
import type { RunOutcome } from '../inference/frame-scheduler.js';
import { emptyHealthStats, finalHealthVerdict, judgeHealth, type HealthThresholds, type HealthVerdict } from './health-verdict.js';

export interface HealthWindowOptions extends HealthThresholds {
  windowMs: number;
  /** the golden input's run time in the new worker; null when unknown */
  baselineMs: number | null;
}

type PipelineEvents = Pick<InferencePipeline, 'on' | 'off'>;

/**
 * Watches `model` for one health window: every run of its worker (frames,
 * run time, errors) and the worker's death. Resolves with the verdict at
 * the window's end, earlier on a clear failure, or 'aborted' when `signal`
 * fires (a newer desired state, the agent stopping).
 */
export function watchHealth(pipeline: PipelineEvents, model: ModelToRun, opts: HealthWindowOptions, signal: AbortSignal): Promise<HealthVerdict | 'aborted'> {
  return new Promise((resolve) => {
    const stats = emptyHealthStats();
    let timer: NodeJS.Timeout | undefined;
    const finish = (v: HealthVerdict | 'aborted') => {
      clearTimeout(timer);
      pipeline.off('ran', onRun);
      pipeline.off('worker-died', onDeath);
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const decideEarly = () => {
      const v = judgeHealth(stats, opts.baselineMs, opts, false);
      if (v) finish(v);
    };
    const onRun = (run: RunOutcome, of: ModelToRun) => {
      if (of !== model) return;
      if (run.ok) {
        stats.okFrames += run.frames;
        stats.perFrameMs.push(run.inferenceMs / run.frames);
      } else {
        stats.failedFrames += run.frames;
        stats.lastError = run.error;
      }
      decideEarly();
    };
    const onDeath = (err: Error, of: ModelToRun) => {
      if (of !== model) return;
      stats.workerDied = err.message;
      decideEarly();
    };
    const onAbort = () => finish('aborted');
    if (signal.aborted) return finish('aborted');
    pipeline.on('ran', onRun);
    pipeline.on('worker-died', onDeath);
    signal.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => finish(finalHealthVerdict(stats, opts.baselineMs, opts)), opts.windowMs);
  });
}
