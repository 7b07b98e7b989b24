import { rolloutEventsTopic } from '@perch/shared';
import type { Logger } from 'pino';
import type { RolloutEvent, RolloutStore } from './rollout-store.js';
import type { WebhookDelivery } from './webhook-delivery.js';

/** What the events topic and webhooks carry for one state change of a rollout. */
export interface RolloutEventMessage {
  /** unique per control plane; increasing */
  id: number;
  rolloutId: string;
  type: string;
  state: string;
  stage: number;
  phase: string;
  reason: string | null;
  actor: string | null;
  model: { name: string; version: string };
  at: string;
}

export type EventPublish = (topic: string, payload: string) => Promise<void>;
export type RolloutEventListener = (e: RolloutEventMessage) => void;

/**
 * Records each state change in the rollout's history first (SQLite, with
 * its webhook deliveries in their outbox), then tells the world without
 * waiting: MQTT (QoS 1 on `perch/v1/rollouts/{id}/events`), webhooks, and
 * listeners in this process.
 */
export class RolloutEvents {
  private readonly listeners: RolloutEventListener[] = [];

  constructor(
    private readonly store: RolloutStore,
    private readonly publish: EventPublish,
    private readonly webhooks: WebhookDelivery,
    private readonly log: Logger,
  ) {}

  onEvent(listener: RolloutEventListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  record(e: Omit<RolloutEvent, 'id'>, model: { name: string; version: string }): RolloutEventMessage {
    // The history row and its webhook deliveries commit together: no event is recorded and never sent.
    const msg = this.store.atomically(() => {
      const stored = this.store.addEvent(e);
      const m: RolloutEventMessage = {
        id: stored.id,
        rolloutId: e.rolloutId,
        type: e.type,
        state: e.state,
        stage: e.stageIndex,
        phase: e.phase,
        reason: e.reason,
        actor: e.actor,
        model,
        at: new Date(e.at).toISOString(),
      };
      this.webhooks.enqueue(`${e.rolloutId}:${stored.id}`, `rollout.${e.type}`, m);
      return m;
    });
    this.log.info({ rolloutId: e.rolloutId, type: e.type, state: e.state, stage: e.stageIndex, phase: e.phase, reason: e.reason }, 'rollout event');
    this.publish(rolloutEventsTopic(e.rolloutId), JSON.stringify(msg)).catch((err: unknown) => this.log.warn({ err, rolloutId: e.rolloutId }, 'publishing a rollout event failed'));
    for (const l of this.listeners) {
      try {
        l(msg);
      } catch (err) {
        this.log.warn({ err }, 'rollout event listener failed');
      }
    }
    return msg;
  }
}
