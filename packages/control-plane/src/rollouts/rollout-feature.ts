import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { DesiredStateService } from '../desired-state/desired-state-service.js';
import type { Db } from '../store/database.js';
import { DeviceLabelStore } from '../store/device-label-store.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionStore } from '../store/model-version-store.js';
import { webhookOptionsOf, type RolloutConfig } from './rollout-config.js';
import { RolloutEngine } from './rollout-engine.js';
import { RolloutEvents, type EventPublish } from './rollout-events.js';
import { setDesiredByHand, type ManualChange } from './manual-desired-change.js';
import { RolloutStore } from './rollout-store.js';
import { WebhookDelivery } from './webhook-delivery.js';
import { WebhookOutbox } from './webhook-outbox.js';

/** The config a feature needs; tests may leave the delivery options to their defaults. */
export type RolloutFeatureConfig = Pick<RolloutConfig, 'tickSeconds' | 'webhooks'> & Partial<Pick<RolloutConfig, 'webhookDelivery'>>;

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

/** Staged rollouts composed: the store, the engine, and its events (MQTT, webhooks through their outbox). */
export class RolloutFeature {
  readonly store: RolloutStore;
  readonly events: RolloutEvents;
  readonly engine: RolloutEngine;
  readonly webhooks: WebhookDelivery;
  private readonly now: () => number;

  constructor(config: RolloutFeatureConfig, deps: RolloutFeatureDeps) {
    this.now = deps.now ?? Date.now;
    this.store = new RolloutStore(deps.db);
    // Secrets are read once, at start: a missing file stops the control plane with its name.
    const targets = config.webhooks.map((h) => ({ url: h.url, secret: h.secretFile ? readSecret(h.secretFile) : null }));
    this.webhooks = new WebhookDelivery(
      new WebhookOutbox(deps.db),
      targets,
      deps.log.child({ feature: 'rollout-webhooks' }),
      config.webhookDelivery ? webhookOptionsOf(config.webhookDelivery) : {},
    );
    this.events = new RolloutEvents(this.store, deps.publish, this.webhooks, deps.log);
    this.engine = new RolloutEngine(
      { db: deps.db, store: this.store, labels: new DeviceLabelStore(deps.db), devices: deps.devices, versions: deps.versions, desired: deps.desired, events: this.events, log: deps.log },
      { tickMs: config.tickSeconds * 1000, ...(deps.now ? { now: deps.now } : {}) },
    );
  }

  /** A desired model set by hand: refused on a device an active rollout manages unless forced (manual-desired-change.ts). */
  setDesiredByHand<T>(deviceId: string, change: ManualChange, apply: () => Promise<T>): Promise<{ result: T; releasedFrom: string[] }> {
    return setDesiredByHand({ engine: this.engine, store: this.store, events: this.events, now: this.now }, deviceId, change, apply);
  }

  start(): void {
    // Deliveries a previous run left in the outbox go out first, in order.
    this.webhooks.start();
    this.engine.start();
  }

  async stop(): Promise<void> {
    await this.engine.stop();
    await this.webhooks.stop();
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
