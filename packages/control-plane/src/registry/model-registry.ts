import {
  modelTargetPath,
  signEnvelope,
  type ModelMetadata,
  type ModelTarget,
  type SigningKey,
} from '@perch/shared';
import type { ModelVersionRecord, ModelVersionStore } from '../store/model-version-store.js';
import type { ArtifactStore } from './artifact-store.js';
import { checkOnnxModel } from './onnx-model-check.js';

export class VersionExistsError extends Error {
  constructor(name: string, version: string) {
    super(`model ${name} version ${version} is already registered; versions are immutable, register a new one`);
    this.name = 'VersionExistsError';
  }
}

/** How long a signed model target stays valid before the registry must re-sign it. */
const TARGET_VALIDITY_MS = 365 * 24 * 3600 * 1000;

/**
 * Registers model versions: check the file against its metadata, store it
 * content-addressed, sign its target description, record it. Nothing is
 * stored unless every check passed.
 */
export class ModelRegistry {
  constructor(
    private readonly versions: ModelVersionStore,
    private readonly artifacts: ArtifactStore,
    private readonly signingKey: SigningKey,
  ) {}

  async register(name: string, version: string, metadata: ModelMetadata, bytes: Uint8Array, now = new Date()): Promise<ModelVersionRecord> {
    if (this.versions.get(name, version)) throw new VersionExistsError(name, version);
    await checkOnnxModel(bytes, metadata);
    const { sha256, length } = this.artifacts.put(bytes);
    const target: ModelTarget = {
      _type: 'model-target',
      spec_version: '1.0',
      version: 1,
      expires: new Date(now.getTime() + TARGET_VALIDITY_MS).toISOString(),
      path: modelTargetPath(name, version),
      length,
      hashes: { sha256 },
      custom: { name, version, format: 'onnx', metadata, createdAt: now.toISOString() },
    };
    // Re-check after the awaits: two uploads of one version may race.
    if (this.versions.get(name, version)) throw new VersionExistsError(name, version);
    return this.versions.insert({
      name,
      version,
      sha256,
      length,
      metadata,
      target: signEnvelope(target, [this.signingKey]),
      createdAt: now.getTime(),
    });
  }
}
