/** A refused rollout request; the API answers with its status and code. */
export class RolloutError extends Error {
  constructor(
    readonly status: 404 | 409 | 422,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'RolloutError';
  }
}

export class RolloutNotFoundError extends RolloutError {
  constructor(id: string) {
    super(404, 'not_found', `no rollout ${id}`);
  }
}

/** Another active rollout can select a device this one would. */
export class RolloutConflictError extends RolloutError {
  constructor(message: string) {
    super(409, 'rollout_conflict', message, 'target');
  }
}

/** An operator action the rollout's state does not allow. */
export class RolloutStateError extends RolloutError {
  constructor(message: string) {
    super(409, 'invalid_rollout_state', message);
  }
}

/** A desired model set by hand on a device an active rollout manages, without `force`. */
export class DeviceInRolloutError extends RolloutError {
  constructor(
    readonly rolloutId: string,
    message: string,
  ) {
    super(409, 'device_in_rollout', message);
  }
}
