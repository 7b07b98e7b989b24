import type { DeviceLabelStore } from '../store/device-label-store.js';
import { selectorOf, type RolloutTarget } from './rollout-spec.js';
import { ACTIVE_STATES, type RolloutRecord, type RolloutStore } from './rollout-store.js';

export interface RolloutConflict {
  rollout: RolloutRecord;
  /** devices both would hold, in id order */
  devices: string[];
}

/**
 * The first active rollout (running, paused, rolling back) that holds a
 * device `target` selects now: one its own target selects, or one already
 * in it. Two rollouts on one device would overwrite each other's desired
 * states, and a rollback would restore the other's model.
 */
export function findConflict(store: RolloutStore, labels: DeviceLabelStore, target: RolloutTarget, excludeId?: string): RolloutConflict | null {
  const mine = new Set(labels.select(selectorOf(target)));
  if (mine.size === 0) return null;
  for (const other of store.inStates(ACTIVE_STATES)) {
    if (other.id === excludeId) continue;
    const theirs = new Set(labels.select(selectorOf(other.spec.target)));
    for (const a of store.assignments(other.id)) theirs.add(a.deviceId);
    const both = [...theirs].filter((d) => mine.has(d)).sort();
    if (both.length > 0) return { rollout: other, devices: both };
  }
  return null;
}

export function conflictMessage(c: RolloutConflict): string {
  const name = c.rollout.name ? ` (${c.rollout.name})` : '';
  const some = c.devices.slice(0, 5).join(', ');
  const more = c.devices.length > 5 ? ` and ${c.devices.length - 5} more` : '';
  return `rollout ${c.rollout.id}${name} of ${c.rollout.spec.model.name} ${c.rollout.spec.model.version} is ${c.rollout.state} on ${c.devices.length} of these devices (${some}${more}); let it finish, or abort or roll it back first`;
}
