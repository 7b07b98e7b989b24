import type { RolloutEngine } from './rollout-engine.js';
import { DeviceInRolloutError } from './rollout-errors.js';
import type { RolloutEvents } from './rollout-events.js';
import { ACTIVE_STATES, type RolloutRecord, type RolloutState, type RolloutStore } from './rollout-store.js';

/** States in which a rollout may still issue a device a desired state: active ones, and finished ones through a later rollback. */
const MAY_ISSUE: readonly RolloutState[] = [...ACTIVE_STATES, 'completed', 'aborted'];

export interface ManualChangeDeps {
  engine: RolloutEngine;
  store: RolloutStore;
  events: RolloutEvents;
  now: () => number;
}

export interface ManualChange {
  /** an operator who means it: the device leaves any active rollout instead of the change being refused */
  force: boolean;
  /** the API token, for the rollouts' history */
  actor: string | null;
}

function refusal(r: RolloutRecord, deviceId: string): DeviceInRolloutError {
  const name = r.name ? ` (${r.name})` : '';
  return new DeviceInRolloutError(
    r.id,
    `device ${deviceId} is in rollout ${r.id}${name} of ${r.spec.model.name} ${r.spec.model.version}, which is ${r.state}: its desired model is the rollout's to set. ` +
      'Let the rollout finish, abort or roll it back, or send "force": true to take the device out of it for good',
  );
}

/**
 * A desired model set by hand (`PUT /devices/{id}/desired-model`) on a
 * device a rollout holds. Refused while the rollout is active (running,
 * paused, rolling back): it would overwrite the change at its next stage or
 * rollback, and judge the model an operator chose as its candidate. With
 * `force`, and always for a finished rollout (whose rollback would undo the
 * change), the device is released: it stays listed in the rollout, which
 * issues it nothing more, rollback included, and leaves it out of its gates;
 * each release is an event in that rollout's history. Runs between ticks,
 * so no tick issues the device a state after the operator's.
 */
export function setDesiredByHand<T>(deps: ManualChangeDeps, deviceId: string, change: ManualChange, apply: () => Promise<T>): Promise<{ result: T; releasedFrom: string[] }> {
  return deps.engine.exclusive(async () => {
    const holding = deps.store.holding(deviceId).filter((r) => MAY_ISSUE.includes(r.state));
    const active = holding.find((r) => ACTIVE_STATES.includes(r.state));
    if (active && !change.force) throw refusal(active, deviceId);
    // Applied first: a refused model (unknown version) releases nothing.
    const result = await apply();
    const at = deps.now();
    for (const r of holding) {
      deps.store.release(r.id, deviceId, change.actor, at);
      deps.events.record(
        { rolloutId: r.id, at, type: 'device-released', state: r.state, stageIndex: r.stageIndex, phase: r.phase, reason: `${deviceId}: desired model set by hand; the rollout no longer manages it`, actor: change.actor },
        r.spec.model,
      );
    }
    return { result, releasedFrom: holding.map((r) => r.id) };
  });
}
