import type { Logger } from 'pino';
import type { SigningKey } from '@perch/shared';
import type { DesiredStateService } from '../desired-state/desired-state-service.js';
import type { ModelRegistry } from '../registry/model-registry.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import type { TelemetryStore } from '../store/telemetry-store.js';

/** What the REST routes may reach. */
export interface ApiDeps {
  log: Logger;
  registry: ModelRegistry;
  versions: ModelVersionStore;
  devices: DeviceStore;
  desired: DesiredStateService;
  telemetry: TelemetryStore;
  signingKeys: readonly SigningKey[];
}
