import { mkdir } from 'node:fs/promises';
import type { AgentConfig } from './config/agent-config.js';
import { ArtifactDownloader } from './deployment/artifact-downloader.js';
import { DeploymentManager } from './deployment/deployment-manager.js';
import { ReportedStateReporter } from './deployment/reported-state-reporter.js';
import { InferencePipeline } from './inference/inference-pipeline.js';
import type { Logger } from './log/logger.js';
import { ModelStore } from './model-store/model-store.js';
import { MqttConnection } from './mqtt/connection.js';
import { MessageDispatcher } from './mqtt/dispatcher.js';
import { SequenceStore } from './telemetry/sequence-store.js';
import { TelemetryPublisher } from './telemetry/telemetry-publisher.js';
import { TelemetryReporter } from './telemetry/telemetry-reporter.js';
import { WindowAggregator } from './telemetry/window-aggregator.js';

/**
 * The agent: its features composed in one place and started in dependency
 * order; stop() runs them backwards. Runtime features to come (RTSP
 * supervision, an outbox, events) are more of the same start()/stop() parts.
 */
export class Agent {
  readonly connection: MqttConnection;
  readonly dispatcher: MessageDispatcher;
  readonly store: ModelStore;
  readonly downloader: ArtifactDownloader;
  readonly reporter: ReportedStateReporter;
  readonly telemetry: TelemetryReporter;
  readonly pipeline: InferencePipeline;
  readonly deployment: DeploymentManager;
  private readonly sequence: SequenceStore;
  private started = false;

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
  ) {
    const c = config;
    this.connection = new MqttConnection({ deviceId: c.deviceId, ...c.broker }, log.child({ feature: 'mqtt' }));
    this.dispatcher = new MessageDispatcher(this.connection, log.child({ feature: 'dispatcher' }));
    this.store = new ModelStore(c.dataDir);
    this.downloader = new ArtifactDownloader(this.connection, c.download, log.child({ feature: 'download' }));
    this.sequence = new SequenceStore(c.dataDir);
    const aggregator = new WindowAggregator(c.cameras.map((cam) => cam.id));
    this.telemetry = new TelemetryReporter(
      c.deviceId,
      aggregator,
      this.sequence,
      new TelemetryPublisher(this.connection),
      c.telemetry.windowSeconds * 1000,
      log.child({ feature: 'telemetry' }),
    );
    this.pipeline = new InferencePipeline(
      { cameras: c.cameras, ffmpegPath: c.ffmpegPath, intraOpThreads: c.inference.intraOpThreads, maxBatch: c.inference.maxBatch, maxBatchDelayMs: c.inference.maxBatchDelayMs, allowSpinning: c.inference.allowSpinning },
      this.telemetry,
      log.child({ feature: 'inference' }),
    );
    this.reporter = new ReportedStateReporter(this.connection, () => this.pipeline.cameraStates(), log.child({ feature: 'reported' }));
    this.pipeline.on('camera-state', () => this.reporter.changed());
    this.deployment = new DeploymentManager(
      { deviceId: c.deviceId, trustedKeys: c.trust.keys },
      this.store,
      this.downloader,
      this.pipeline,
      this.reporter,
      log.child({ feature: 'deployment' }),
    );
    this.dispatcher.register(this.deployment.handler());
    this.dispatcher.register(this.downloader.handler());
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await mkdir(this.config.dataDir, { recursive: true });
    await this.store.init();
    await this.sequence.load();
    this.telemetry.start();
    this.pipeline.start();
    this.reporter.start();
    // Connecting runs in the background: the box must run its last good model with no control plane.
    this.connection.start();
    // Desired states are only listened to once the stored state (and its generation) is back.
    await this.deployment.start();
    this.dispatcher.start();
    this.log.info({ deviceId: this.config.deviceId, cameras: this.config.cameras.length }, 'agent started');
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.dispatcher.stop();
    await this.deployment.stop();
    await this.pipeline.stop();
    await this.telemetry.stop();
    this.reporter.stop();
    await this.connection.stop();
    this.log.info('agent stopped');
  }
}
