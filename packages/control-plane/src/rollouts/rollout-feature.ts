import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { DesiredStateService } from '../desired-state/desired-state-service.js';
import type { Db } from '../store/database.js';
import { DeviceLabelStore } from '../store/device-label-store.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import type { RolloutConfig } from './rollout-config.js';
import { RolloutEngine } from './rollout-engine.js';
import { RolloutEvents, type EventPublish } from './rollout-events.js';
import { RolloutStore } from './rollout-store.js';
import { WebhookDelivery } from './webhook-delivery.js';

export interface RolloutFeatureDeps {
  db: Db;
  devices: DeviceStore;
  versions: ModelVersionStore;
  desired: DesiredStateService;
  /** publishes on the control plane's MQTT connection (QoS 1) */
  publish: EventPublish;
  log: Logger;
  /** the engine's clock; tests drive soaks with it */
  now?: () => number;
}

/** Staged rollouts composed: the store, the engine, and its events (MQTT, webhooks). */
export class RolloutFeature {
  readonly store: RolloutStore;
  readonly events: RolloutEvents;
  readonly engine: RolloutEngine;
  readonly webhooks: WebhookDelivery;

  constructor(config: RolloutConfig, deps: RolloutFeatureDeps) {
    this.store = new RolloutStore(deps.db);
    // Secrets are read once, at start: a missing file stops the control plane with its name.
    const targets = config.webhooks.map((h) => ({ url: h.url, secret: h.secretFile ? readSecret(h.secretFile) : null }));
    this.webhooks = new WebhookDelivery(targets, deps.log.child({ feature: 'rollout-webhooks' }));
    this.events = new RolloutEvents(this.store, deps.publish, this.webhooks, deps.log);
    this.engine = new RolloutEngine(
      { db: deps.db, store: this.store, labels: new DeviceLabelStore(deps.db), devices: deps.devices, versions: deps.versions, desired: deps.desired, events: this.events, log: deps.log },
      { tickMs: config.tickSeconds * 1000, ...(deps.now ? { now: deps.now } : {}) },
    );
  }

  start(): void {
    this.engine.start();
  }

  async stop(): Promise<void> {
    await this.engine.stop();
    this.webhooks.stop();
  }
}

function readSecret(file: string): string {
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`rollouts.webhooks: cannot read secretFile ${file}: ${(err as Error).message}`);
  }
  if (secret.length < 16) throw new Error(`rollouts.webhooks: the secret in ${file} is shorter than 16 characters`);
  return secret;
}
