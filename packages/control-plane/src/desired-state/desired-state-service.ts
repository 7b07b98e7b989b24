import { deviceTopic, encodeJson, signedDesiredStateSchema, signEnvelope, type DesiredState, type SigningKey } from '@perch/shared';
import type { Logger } from 'pino';
import type { ControlPlaneBus } from '../bus/control-plane-bus.js';
import type { DesiredStateRecord, DesiredStateStore } from '../store/desired-state-store.js';
import type { DeviceStore } from '../store/device-store.js';
import type { ModelVersionRecord, ModelVersionStore } from '../store/model-version-store.js';

export class UnknownModelVersionError extends Error {
  constructor(name: string, version: string) {
    super(`model ${name} version ${version} is not registered`);
    this.name = 'UnknownModelVersionError';
  }
}

/** A registered model version, by name and version. */
export interface ModelName {
  name: string;
  version: string;
}

/** What a device should run: the champion, and optionally a challenger in shadow. */
export interface DesiredModels {
  active: ModelName | null;
  /** the challenger; null or absent: none */
  shadow?: ModelName | null;
  /** the share of the champion's frames the challenger runs on; the device's default when absent */
  shadowSampleRate?: number;
  /** going back to an older model on purpose */
  rollback?: boolean;
}

/** How long a desired state may be trusted by a device that hears nothing newer. */
const DESIRED_STATE_VALIDITY_MS = 30 * 24 * 3600 * 1000;

/**
 * Owns each device's desired state: every change is a new generation, signed,
 * stored, then published retained so a device that connects later gets it.
 */
export class DesiredStateService {
  constructor(
    private readonly store: DesiredStateStore,
    private readonly devices: DeviceStore,
    private readonly versions: ModelVersionStore,
    private readonly bus: ControlPlaneBus,
    /** the keys of the TUF root's `desired` role, read at each signing: a rotation takes effect at once */
    private readonly signers: () => SigningKey[],
    private readonly log: Logger,
  ) {}

  get(deviceId: string): DesiredStateRecord | null {
    return this.store.get(deviceId);
  }

  /**
   * `rollback` signs the operator's intent to go back to an older model:
   * without it a device refuses a model registered before the one it runs.
   */
  setActiveModel(deviceId: string, model: ModelName | null, now = new Date(), opts: { rollback?: boolean } = {}): Promise<DesiredStateRecord> {
    return this.setDesired(deviceId, { active: model, ...(opts.rollback ? { rollback: true } : {}) }, now);
  }

  /**
   * The next generation of a device's desired state: the champion
   * (`active`), optionally a challenger run in shadow beside it on a share
   * of its frames, and `rollback` to allow going back to an older model.
   */
  async setDesired(deviceId: string, want: DesiredModels, now = new Date()): Promise<DesiredStateRecord> {
    const version = this.resolve(want.active);
    const shadow = this.resolve(want.shadow ?? null);
    this.devices.ensure(deviceId, now.getTime());
    const generation = (this.store.get(deviceId)?.generation ?? 0) + 1;
    const signed: DesiredState = {
      _type: 'desired-state',
      spec_version: '1.0',
      version: generation,
      expires: new Date(now.getTime() + DESIRED_STATE_VALIDITY_MS).toISOString(),
      deviceId,
      generation,
      issuedAt: now.toISOString(),
      active: version ? version.target : null,
      ...(want.rollback ? { rollback: true } : {}),
      ...(shadow ? { shadow: shadow.target, ...(want.shadowSampleRate !== undefined ? { shadowSampleRate: want.shadowSampleRate } : {}) } : {}),
    };
    const rec: DesiredStateRecord = {
      deviceId,
      generation,
      modelVersionId: version?.id ?? null,
      envelope: signEnvelope(signed, this.signers()),
      updatedAt: now.getTime(),
    };
    this.store.put(rec);
    await this.publish(rec);
    this.log.info({ deviceId, generation, model: want.active ?? null, shadow: want.shadow ?? null, rollback: want.rollback === true }, 'desired state set');
    return rec;
  }

  private resolve(model: ModelName | null | undefined): ModelVersionRecord | null {
    if (!model) return null;
    const version = this.versions.get(model.name, model.version);
    if (!version) throw new UnknownModelVersionError(model.name, model.version);
    return version;
  }

  /** Republishes every stored desired state: the broker's retained copies may be gone after a restart. */
  async republishAll(): Promise<void> {
    for (const rec of this.store.all()) {
      // A state stored by an older release, in a shape devices no longer accept: issued again, one generation on.
      if (!signedDesiredStateSchema.safeParse(rec.envelope).success) await this.reissue(rec);
      else await this.publish(rec);
    }
  }

  private async reissue(rec: DesiredStateRecord): Promise<void> {
    const version = rec.modelVersionId === null ? null : this.versions.byId(rec.modelVersionId);
    this.log.warn({ deviceId: rec.deviceId, generation: rec.generation }, 'stored desired state is in an old format; issuing it again');
    // The challenger, if the old state named one, is read back from what was signed.
    const signed = rec.envelope.signed as Partial<DesiredState>;
    const shadow = signed.shadow?.custom;
    await this.setDesired(rec.deviceId, {
      active: version ? { name: version.name, version: version.version } : null,
      ...(shadow && this.versions.get(shadow.name, shadow.version) ? { shadow: { name: shadow.name, version: shadow.version }, ...(signed.shadowSampleRate !== undefined ? { shadowSampleRate: signed.shadowSampleRate } : {}) } : {}),
    });
  }

  private publish(rec: DesiredStateRecord): Promise<void> {
    return this.bus.publish(deviceTopic(rec.deviceId, 'desired'), encodeJson(rec.envelope), { qos: 1, retain: true });
  }
}
