import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig } from './config/agent-config.js';
import { ArtifactDownloader } from './deployment/artifact-downloader.js';
import { DeploymentManager } from './deployment/deployment-manager.js';
import { ReportedStateReporter } from './deployment/reported-state-reporter.js';
import { DetectionEvents } from './events/detection-events.js';
import { SnapshotStore } from './events/snapshot-store.js';
import { LocalEndpoints } from './http/local-endpoints.js';
import { DeviceIdentity } from './identity/device-identity.js';
import { InferencePipeline } from './inference/inference-pipeline.js';
import type { Logger } from './log/logger.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { ObservedWindowAggregator } from './metrics/frame-observer.js';
import { pipelineView } from './metrics/pipeline-view.js';
import { ModelStore } from './model-store/model-store.js';
import { MqttConnection } from './mqtt/connection.js';
import { MessageDispatcher } from './mqtt/dispatcher.js';
import { Outbox } from './outbox/outbox.js';
import { SequenceStore } from './telemetry/sequence-store.js';
import { TelemetryReporter } from './telemetry/telemetry-reporter.js';
import { MqttMetadataFetcher } from './trust/mqtt-metadata-fetcher.js';
import { TrustedMetadata } from './trust/trusted-metadata.js';

/** One metadata file over MQTT; targets.json of a large registry is the longest. */
const METADATA_TIMEOUT_MS = 30_000;

/**
 * The agent: its features (connection, outbox, deployment, inference
 * pipeline, telemetry, events, metrics, local endpoints) composed in one
 * place and started in dependency order; stop() runs them backwards.
 */
export class Agent {
  readonly connection: MqttConnection;
  /** the connection's credentials: configured, stored, or claimed with the claim token */
  readonly identity: DeviceIdentity;
  readonly dispatcher: MessageDispatcher;
  readonly store: ModelStore;
  readonly downloader: ArtifactDownloader;
  readonly reporter: ReportedStateReporter;
  readonly telemetry: TelemetryReporter;
  readonly pipeline: InferencePipeline;
  readonly deployment: DeploymentManager;
  readonly metrics: AgentMetrics;
  /** store and forward for telemetry windows and detection events: `outbox.enqueue(kind, record)` */
  readonly outbox: Outbox;
  /** detection events, unless `events.enabled` is false */
  readonly events: DetectionEvents | null;
  /** /healthz, /metrics, /snapshot/:camera, unless `http.enabled` is false */
  readonly endpoints: LocalEndpoints | null;
  private readonly sequence: SequenceStore;
  private readonly metadataFetcher: MqttMetadataFetcher;
  private trust: TrustedMetadata | null = null;
  private started = false;

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
  ) {
    const c = config;
    this.connection = new MqttConnection({ deviceId: c.deviceId, ...c.broker }, log.child({ feature: 'mqtt' }));
    this.identity = new DeviceIdentity({ deviceId: c.deviceId, dataDir: c.dataDir, broker: c.broker }, this.connection, log.child({ feature: 'identity' }));
    this.dispatcher = new MessageDispatcher(this.connection, log.child({ feature: 'dispatcher' }));
    this.store = new ModelStore(c.dataDir);
    this.downloader = new ArtifactDownloader(this.connection, c.download, log.child({ feature: 'download' }));
    this.sequence = new SequenceStore(c.dataDir);
    this.outbox = new Outbox({ deviceId: c.deviceId, dataDir: c.dataDir, ...c.outbox }, this.connection, log.child({ feature: 'outbox' }));
    const view = pipelineView(() => this.pipeline, () => this.outbox.stats.pending);
    this.metrics = new AgentMetrics(view);
    const aggregator = new ObservedWindowAggregator(c.cameras.map((cam) => cam.id), [this.metrics]);
    this.telemetry = new TelemetryReporter(
      c.deviceId,
      aggregator,
      this.sequence,
      this.outbox,
      c.telemetry.windowSeconds * 1000,
      log.child({ feature: 'telemetry' }),
    );
    this.pipeline = new InferencePipeline(
      { cameras: c.cameras, ffmpegPath: c.ffmpegPath, ffmpegNice: c.ffmpegNice, decoderCpus: c.decoderCpus, intraOpThreads: c.inference.intraOpThreads, maxBatch: c.inference.maxBatch, maxBatchDelayMs: c.inference.maxBatchDelayMs, batching: c.inference.batching, pipelineDepth: c.inference.pipelineDepth, allowSpinning: c.inference.allowSpinning },
      this.telemetry,
      log.child({ feature: 'inference' }),
    );
    this.reporter = new ReportedStateReporter(this.connection, () => this.pipeline.cameraStates(), log.child({ feature: 'reported' }));
    this.pipeline.on('camera-state', () => this.reporter.changed());
    this.reporter.onDeployment((d) => this.metrics.deploymentChanged(d));
    this.deployment = new DeploymentManager(
      {
        deviceId: c.deviceId,
        // Opened in start() (it reads and may install files); nothing asks for it before.
        trust: {
          refresh: () => this.trusted().refresh(),
          targetInfo: (path) => this.trusted().targetInfo(path),
          checkDesiredSignatures: (envelope) => this.trusted().checkDesiredSignatures(envelope),
        },
        maxCachedModels: c.modelCache.maxModels,
        config: c.deployment,
      },
      this.store,
      this.downloader,
      this.pipeline,
      this.reporter,
      log.child({ feature: 'deployment' }),
    );
    this.metadataFetcher = new MqttMetadataFetcher(this.connection, { timeoutMs: METADATA_TIMEOUT_MS }, log.child({ feature: 'trust' }));
    this.dispatcher.register(this.deployment.handler());
    this.dispatcher.register(this.metadataFetcher.handler());
    this.dispatcher.register(this.downloader.handler());
    const snapshots = c.events.enabled && c.events.snapshots.enabled ? new SnapshotStore(c.events.snapshots, log.child({ feature: 'snapshots' })) : null;
    this.events = c.events.enabled
      ? new DetectionEvents(
          { deviceId: c.deviceId, config: c.events, onHandedOver: (camera, ageMs) => this.telemetry.aggregator.eventPublished(camera, ageMs) },
          this.pipeline,
          new SequenceStore(c.dataDir, 'events-seq.json'),
          { publish: (event) => void this.outbox.enqueue('events', event) },
          snapshots,
          log.child({ feature: 'events' }),
          this.metrics,
        )
      : null;
    this.endpoints = c.http.enabled
      ? new LocalEndpoints(
          c.http,
          {
            cameras: c.cameras,
            results: this.pipeline,
            view,
            metrics: this.metrics,
            snapshots,
            controlPlane: () => ({ connected: this.connection.connected, problem: this.identity.problem }),
          },
          log.child({ feature: 'http' }),
        )
      : null;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await mkdir(this.config.dataDir, { recursive: true });
    await this.store.init();
    await this.sequence.load();
    this.trust = await TrustedMetadata.open({
      dir: join(this.config.dataDir, 'tuf'),
      bootstrapRootFile: this.config.trust.rootFile,
      fetcher: this.metadataFetcher,
      log: this.log.child({ feature: 'trust' }),
    });
    // Before anything that produces records; it sends once the connection is up.
    this.outbox.start();
    this.telemetry.start();
    await this.events?.start();
    this.pipeline.start();
    this.reporter.start();
    // A convenience, not a duty: a port in use must not keep the box from running its model.
    await this.endpoints?.start().catch((err: Error) => this.log.error({ err: err.message, ...this.config.http }, 'local HTTP endpoints not available'));
    // Connecting (or claiming credentials first) runs in the background: the box must run its last good model with no control plane.
    await this.identity.start();
    // Desired states are only listened to once the stored state (and its generation) is back.
    await this.deployment.start();
    this.dispatcher.start();
    this.log.info({ deviceId: this.config.deviceId, cameras: this.config.cameras.length }, 'agent started');
  }

  private trusted(): TrustedMetadata {
    if (!this.trust) throw new Error('trust metadata not open yet');
    return this.trust;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.endpoints?.stop();
    this.dispatcher.stop();
    await this.deployment.stop();
    this.metadataFetcher.close();
    await this.pipeline.stop();
    // After the pipeline (no more results) and before the connection (its end events go out).
    await this.events?.stop();
    await this.telemetry.stop();
    // Last of the producers gone: flush what the broker will take, then close the file.
    await this.outbox.stop();
    this.reporter.stop();
    await this.identity.stop();
    await this.connection.stop();
    this.log.info('agent stopped');
  }
}
