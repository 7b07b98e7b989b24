import { statSync } from 'node:fs';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DispatchStats } from '../bus/device-message-dispatcher.js';
import type { IngestStats, TelemetryIngest } from '../ingest/telemetry-ingest.js';
import type { PresenceCounts } from '../store/device-presence-store.js';
import type { GapTotals } from '../telemetry/gap-detector.js';
import type { WebhookStats } from '../rollouts/webhook-delivery.js';
import type { RetentionCounts } from '../telemetry/retention.js';
import { registerBrokerMetrics, type BrokerLimitStats } from './broker-metrics.js';
import { mirroredCounter } from './mirrored-counter.js';

/** Where the metrics read their values, at scrape time. */
export interface MetricSources {
  ingest: TelemetryIngest;
  /** MQTT clients connected to the embedded broker (the control plane's own client included) */
  connectedClients(): number;
  presence(): PresenceCounts;
  gaps(): GapTotals;
  dispatch(): DispatchStats;
  retentionDeleted(): RetentionCounts;
  markedSilent(): number;
  /** the SQLite file; its -wal beside it is measured too */
  databaseFile: string;
  /** what the embedded broker's limits did; absent where there is no embedded broker */
  brokerStats?: () => BrokerLimitStats;
  /** rollout webhook deliveries: sent, retried, given up */
  rolloutWebhooks?: () => WebhookStats;
}

export const METRIC_PREFIX = 'perch_cp_';

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * The control plane's Prometheus metrics, in a registry of its own (two
 * control planes in one process, as in tests, do not collide). Gauges and
 * mirrored counters read their sources when scraped; ingest lag and batch
 * size are observed per committed batch.
 */
export class ControlPlaneMetrics {
  readonly registry = new Registry();

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    const p = METRIC_PREFIX;
    collectDefaultMetrics({ register: this.registry, prefix: p });

    const mirror = (name: string, help: string, read: (s: IngestStats) => number) => mirroredCounter(registers, `${p}${name}`, help, () => read(sources.ingest.stats));
    mirror('telemetry_windows_received_total', 'Telemetry windows received for ingest (those that do not decode included)', (s) => s.received);
    mirror('telemetry_windows_malformed_total', 'Telemetry windows that did not decode in the writer (malformed JSON, not the contract, another device): dropped', (s) => s.malformed);
    mirror('telemetry_windows_inserted_total', 'Telemetry windows stored for the first time (late ones included)', (s) => s.inserted);
    mirror('telemetry_windows_duplicate_total', 'Telemetry windows already stored (redeliveries)', (s) => s.duplicates);
    mirror('telemetry_windows_late_total', 'Telemetry windows that filled a sequence gap', (s) => s.late);
    mirror('telemetry_windows_lost_total', 'Acknowledged telemetry windows (through an external broker) dropped because the database refused them', (s) => s.lost);
    mirror('telemetry_windows_not_kept_total', 'Unacknowledged telemetry windows given up (stopping, or a backlog over maxPending while writes fail): their devices send them again', (s) => s.notKept);
    mirror('telemetry_batch_failures_total', 'Telemetry batches whose transaction failed (retried)', (s) => s.failedBatches);

    new Gauge({
      name: `${p}telemetry_windows_queued`,
      help: 'Telemetry windows accepted and waiting for their batch',
      registers,
      collect() {
        this.set(sources.ingest.queued);
      },
    });

    const lag = new Histogram({
      name: `${p}telemetry_ingest_lag_seconds`,
      help: 'Time from a telemetry window reaching the control plane to its batch committing',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const batchSize = new Histogram({
      name: `${p}telemetry_batch_windows`,
      help: 'Telemetry windows per committed batch',
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
      registers,
    });
    sources.ingest.onBatch((batch, _result, committedAt) => {
      batchSize.observe(batch.length);
      for (const w of batch) lag.observe((committedAt - w.receivedAt) / 1000);
    });

    const webhooks = sources.rolloutWebhooks;
    if (webhooks) {
      mirroredCounter(
        registers,
        `${p}rollout_webhook_deliveries_total`,
        'Rollout webhook deliveries by outcome: delivered (a 2xx), retried (a try that failed), given_up (too many tries, too old, too many waiting, or the webhook left the config)',
        () => {
          const w = webhooks();
          return { delivered: w.delivered, retried: w.retried, given_up: w.givenUp };
        },
        'outcome',
      );
    }

    new Gauge({
      name: `${p}mqtt_clients_connected`,
      help: "MQTT clients connected to the embedded broker, the control plane's own client included",
      registers,
      collect() {
        this.set(sources.connectedClients());
      },
    });
    new Gauge({
      name: `${p}devices`,
      help: 'Devices by status (online, offline, unknown); silent: offline because nothing was heard for too long',
      labelNames: ['status'],
      registers,
      collect() {
        const c = sources.presence();
        this.set({ status: 'online' }, c.online);
        this.set({ status: 'offline' }, c.offline);
        this.set({ status: 'unknown' }, c.unknown);
        this.set({ status: 'silent' }, c.silent);
      },
    });
    mirroredCounter(registers, `${p}devices_marked_silent_total`, 'Devices the presence sweeper marked offline for silence', () => sources.markedSilent());
    new Gauge({
      name: `${p}telemetry_missing_windows`,
      help: 'Telemetry seqs missing, per state: pending (within the grace period) or lost',
      labelNames: ['state'],
      registers,
      collect() {
        const g = sources.gaps();
        this.set({ state: 'pending' }, g.missing - g.confirmedLost);
        this.set({ state: 'lost' }, g.confirmedLost);
      },
    });
    new Gauge({
      name: `${p}telemetry_devices_with_gaps`,
      help: 'Devices with at least one missing telemetry seq',
      registers,
      collect() {
        this.set(sources.gaps().devicesWithGaps);
      },
    });
    mirroredCounter(registers, `${p}dispatch_dropped_total`, 'Device messages dropped: malformed, schema-invalid, wrong device, or a failing handler', () => sources.dispatch().dropped);
    mirroredCounter(registers, `${p}retention_deleted_rows_total`, 'Rows deleted by retention (telemetry and audit log), per kind', () => sources.retentionDeleted(), 'kind');
    new Gauge({
      name: `${p}database_size_bytes`,
      help: 'SQLite database size on disk, per file: main, wal',
      labelNames: ['file'],
      registers,
      collect() {
        this.set({ file: 'main' }, fileSize(sources.databaseFile));
        this.set({ file: 'wal' }, fileSize(`${sources.databaseFile}-wal`));
      },
    });
    if (sources.brokerStats) registerBrokerMetrics(this.registry, p, sources.brokerStats);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
