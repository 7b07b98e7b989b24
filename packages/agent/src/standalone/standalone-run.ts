import { basename } from 'node:path';
import { modelTargetPath, modelTargetSchema, type ModelTarget } from '@perch/shared';
import { LocalEndpoints } from '../http/local-endpoints.js';
import { InferencePipeline } from '../inference/inference-pipeline.js';
import type { Logger } from '../log/logger.js';
import { AgentMetrics } from '../metrics/agent-metrics.js';
import { ObservedWindowAggregator, type FrameObserver } from '../metrics/frame-observer.js';
import { pipelineView } from '../metrics/pipeline-view.js';
import { fileSha256 } from '../storage/file-sha256.js';
import { LivePrinter } from './live-printer.js';
import type { RunOptions } from './run-options.js';

const LOCAL_VERSION = 'local';

/**
 * A model file the installer chose on this box, described the way the
 * registry describes a signed one, so the pipeline runs it as it runs any
 * other. It is never signed and never leaves the box: standalone mode has no
 * control plane to trust.
 */
async function localTarget(modelPath: string, metadata: RunOptions['metadata']): Promise<ModelTarget> {
  const { sha256, length } = await fileSha256(modelPath);
  const name =
    basename(modelPath)
      .replace(/\.onnx$/i, '')
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[^a-z0-9]+/, '')
      .slice(0, 64) || 'model';
  return modelTargetSchema.parse({
    _type: 'model-target',
    spec_version: '1.0',
    version: 1,
    expires: new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString(),
    path: modelTargetPath(name, LOCAL_VERSION),
    length,
    hashes: { sha256 },
    custom: { name, version: LOCAL_VERSION, format: 'onnx', metadata, createdAt: new Date().toISOString() },
  });
}

/**
 * `perch-agent run`: one model on one camera with no control plane, for
 * trying a model on a box. The agent's own pipeline (ffmpeg camera, worker
 * thread inference) does the work; a LivePrinter shows what it sees, and
 * with `--http` the agent's local endpoints serve it too.
 */
export class StandaloneRun {
  readonly pipeline: InferencePipeline;
  readonly printer: LivePrinter;
  readonly endpoints: LocalEndpoints | null = null;
  private started = false;

  constructor(
    private readonly opts: RunOptions,
    private readonly log: Logger,
    write: (line: string) => void,
    intervalMs = 1000,
  ) {
    const view = pipelineView(() => this.pipeline);
    this.printer = new LivePrinter([opts.camera.id], view.cameraStates, write, intervalMs);
    const observers: FrameObserver[] = [this.printer];
    let metrics: AgentMetrics | null = null;
    if (opts.http) {
      metrics = new AgentMetrics(view);
      observers.push(metrics);
    }
    const aggregator = new ObservedWindowAggregator([opts.camera.id], observers);
    this.pipeline = new InferencePipeline(
      { cameras: [opts.camera], ffmpegPath: opts.ffmpegPath, intraOpThreads: opts.intraOpThreads },
      // The window statistics are kept but never sent: there is nowhere to send them.
      { aggregator, switchModel: (model) => void aggregator.switchModel(model) },
      log.child({ feature: 'inference' }),
    );
    if (opts.http && metrics) {
      this.endpoints = new LocalEndpoints(opts.http, { cameras: [opts.camera], results: this.pipeline, view, metrics, snapshots: null }, log.child({ feature: 'http' }));
    }
  }

  get model(): string {
    const m = this.pipeline.activeModel?.target;
    return m ? `${m.custom.name} (sha256 ${m.hashes.sha256.slice(0, 12)})` : 'none';
  }

  /** Loads the model (throws ModelLoadError if it cannot) and starts the camera. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const target = await localTarget(this.opts.modelPath, this.opts.metadata);
    this.pipeline.start();
    await this.pipeline.activate({ modelPath: this.opts.modelPath, target });
    this.printer.start();
    await this.endpoints?.start();
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.printer.stop();
    await this.endpoints?.stop();
    await this.pipeline.stop();
    this.log.debug('standalone run stopped');
  }
}
