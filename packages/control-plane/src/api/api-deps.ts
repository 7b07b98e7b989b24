import type { Logger } from 'pino';
import type { DesiredStateService } from '../desired-state/desired-state-service.js';
import type { ArtifactStore } from '../registry/artifact-store.js';
import type { ModelRegistry } from '../registry/model-registry.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
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
  /** the TUF repository, when this control plane runs one */
  tuf?: TufRepository;
}
