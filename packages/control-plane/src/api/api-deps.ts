import type { Logger } from 'pino';
import type { DesiredStateService } from '../desired-state/desired-state-service.js';
import type { DeviceIdentityService } from '../identity/device-identity-service.js';
import type { ControlPlaneMetrics } from '../metrics/control-plane-metrics.js';
import type { ArtifactStore } from '../registry/artifact-store.js';
import type { ModelRegistry } from '../registry/model-registry.js';
import type { RolloutFeature } from '../rollouts/rollout-feature.js';
import type { ApiTokenStore } from '../store/api-token-store.js';
import type { AuditLogStore } from '../store/audit-log-store.js';
import type { BackupFolder } from '../store/backup-folder.js';
import type { DeviceListing } from '../store/device-listing.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import type { ModelVersionPages } from '../store/model-version-pages.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import type { FleetTelemetry } from '../telemetry/fleet-telemetry.js';
import type { TufRepository } from '../trust/tuf-repository.js';

/** What the REST routes may reach. */
export interface ApiDeps {
  log: Logger;
  registry: ModelRegistry;
  versions: ModelVersionStore;
  artifacts: ArtifactStore;
  devices: DeviceStore;
  desired: DesiredStateService;
  telemetry: TelemetryStore;
  /** filtered, paginated device ids */
  deviceListing: DeviceListing;
  /** paginated models and versions */
  modelPages: ModelVersionPages;
  /** API tokens with roles */
  tokens: ApiTokenStore;
  audit: AuditLogStore;
  /** the TUF repository, when this control plane runs one */
  tuf?: TufRepository;
  /** device credentials, claim tokens, revocation, tags and groups */
  identity?: DeviceIdentityService;
  /** rollups, sequence gaps, fleet summary */
  fleetTelemetry?: FleetTelemetry;
  /** Prometheus metrics, served at /metrics */
  metrics?: ControlPlaneMetrics;
  /** database backups into the control plane's own folder */
  backups?: BackupFolder;
  /** staged rollouts: the engine and its store */
  rollouts?: RolloutFeature;
}
