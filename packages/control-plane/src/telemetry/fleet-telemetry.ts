import type { IngestStats, TelemetryIngest } from '../ingest/telemetry-ingest.js';
import type { DevicePresenceStore, PresenceCounts } from '../store/device-presence-store.js';
import type { TelemetryRollups } from '../store/telemetry-rollups.js';
import type { GapDetector, GapTotals } from './gap-detector.js';

export interface FleetSummary {
  devices: PresenceCounts;
  /** MQTT clients on the embedded broker, the control plane's own included */
  mqttClientsConnected: number;
  ingest: IngestStats & { queued: number };
  gaps: GapTotals & { graceMs: number };
}

/** What the fleet telemetry routes read: rollups, gaps and a one-call summary of the fleet. */
export class FleetTelemetry {
  constructor(
    readonly rollups: TelemetryRollups,
    readonly gaps: GapDetector,
    private readonly presence: DevicePresenceStore,
    private readonly ingest: TelemetryIngest,
    private readonly connectedClients: () => number,
  ) {}

  summary(now = Date.now()): FleetSummary {
    return {
      devices: this.presence.counts(),
      mqttClientsConnected: this.connectedClients(),
      ingest: { ...this.ingest.stats, queued: this.ingest.queued },
      gaps: { ...this.gaps.totals(now), graceMs: this.gaps.graceMs },
    };
  }
}
