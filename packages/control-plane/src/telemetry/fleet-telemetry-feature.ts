import type { Logger } from 'pino';
import { DEFERRED_STATE_DEFAULTS } from '../ingest/deferred-telemetry-state.js';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { TelemetryIngest } from '../ingest/telemetry-ingest.js';
import { TelemetryWriterThread } from '../ingest/telemetry-writer-thread.js';
import { ControlPlaneMetrics, type MetricSources } from '../metrics/control-plane-metrics.js';
import type { Db } from '../store/database.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import { FleetTelemetry } from './fleet-telemetry.js';
import { GapDetector } from './gap-detector.js';
import { PresenceSweeper } from './presence-sweeper.js';
import { RetentionJob } from './retention.js';
import type { TelemetryConfig } from './telemetry-config.js';

/** What the feature needs of the broker. */
export interface BrokerPresence {
  readonly connectedClients: number;
  isConnected(clientId: string): boolean;
}

/**
 * Telemetry at fleet scale, composed: batched ingest (windows, gaps,
 * rollups, last seen in one transaction), the presence sweeper and the
 * retention job, and the read side the API and metrics use.
 */
export class FleetTelemetryFeature {
  readonly gaps: GapDetector;
  readonly rollups: TelemetryRollups;
  readonly presence: DevicePresenceStore;
  readonly ingest: TelemetryIngest;
  readonly sweeper: PresenceSweeper;
  readonly retention: RetentionJob;
  readonly view: FleetTelemetry;
  private readonly writerThread: TelemetryWriterThread | null;

  constructor(
    private readonly db: Db,
    windows: TelemetryStore,
    config: TelemetryConfig,
    private readonly broker: BrokerPresence,
    log: Logger,
  ) {
    this.gaps = new GapDetector(db, config.gapGraceSeconds * 1000);
    this.rollups = new TelemetryRollups(db);
    this.presence = new DevicePresenceStore(db);
    // With the writer thread, this thread's gaps, rollups and presence stores only read (and the presence store
    // marks connects and disconnects); the thread has its own, on its own connection.
    const state = { flushMs: config.ingest.stateFlushMs, chunkRows: DEFERRED_STATE_DEFAULTS.chunkRows };
    const writerLog = log.child({ feature: 'telemetry-writer' });
    this.writerThread =
      config.ingest.writerThread && !db.memory
        ? new TelemetryWriterThread({ databaseFile: db.name, gapGraceMs: config.gapGraceSeconds * 1000, state }, writerLog)
        : null;
    this.ingest = new TelemetryIngest(
      this.writerThread ?? new TelemetryBatchWriter(db, windows, this.gaps, this.rollups, this.presence, state, writerLog),
      log,
      config.ingest,
    );
    this.sweeper = new PresenceSweeper(
      this.presence,
      { silentAfterMs: config.presence.silentAfterSeconds * 1000, intervalMs: config.presence.sweepSeconds * 1000, isConnected: (id) => broker.isConnected(id) },
      log.child({ feature: 'presence' }),
    );
    const { intervalMinutes, ...policy } = config.retention;
    this.retention = new RetentionJob(db, { ...policy, intervalMs: intervalMinutes * 60_000 }, log.child({ feature: 'retention' }));
    this.view = new FleetTelemetry(this.rollups, this.gaps, this.presence, this.ingest, () => broker.connectedClients);
  }

  /** The control plane's Prometheus metrics over this feature and the other sources given. */
  createMetrics(sources: Pick<MetricSources, 'dispatch' | 'databaseFile' | 'brokerStats' | 'rolloutWebhooks'>): ControlPlaneMetrics {
    return new ControlPlaneMetrics({
      ingest: this.ingest,
      connectedClients: () => this.broker.connectedClients,
      presence: () => this.presence.counts(),
      gaps: () => this.gaps.totals(Date.now()),
      retentionDeleted: () => this.retention.stats.deleted,
      markedSilent: () => this.sweeper.stats.markedSilent,
      ...sources,
    });
  }

  start(): void {
    if (this.writerThread) {
      // The writer thread checkpoints; this thread's commits then never wait on a checkpoint's I/O.
      this.db.pragma('wal_autocheckpoint = 0');
      this.writerThread.start();
    }
    this.sweeper.start();
    this.retention.start();
  }

  /** Stops the periodic jobs; the ingest is flushed by the control plane once the bus is down. */
  async stop(): Promise<void> {
    this.sweeper.stop();
    await this.retention.stop();
  }
}
