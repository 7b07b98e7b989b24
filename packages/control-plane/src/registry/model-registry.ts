import { modelTargetPath, tufTargetOf, type ModelMetadata, type ModelTarget, type TufTargetEntry } from '@perch/shared';
import type { ModelVersionRecord, ModelVersionStore } from '../store/model-version-store.js';
import type { ArtifactStore } from './artifact-store.js';
import { storeChunkManifest } from './chunk-manifests.js';
import { checkOnnxModel } from './onnx-model-check.js';

export class VersionExistsError extends Error {
  constructor(name: string, version: string) {
    super(`model ${name} version ${version} is already registered; versions are immutable, register a new one`);
    this.name = 'VersionExistsError';
  }
}

/** Where registered targets are signed: TUF's targets role (trust/tuf-repository.ts). */
export interface TargetSigner {
  addTarget(target: TufTargetEntry): Promise<number>;
}

/**
 * Registers model versions: check the file against its metadata, store it
 * content-addressed, add its target description to TUF's targets (signed
 * by the targets role, then snapshot and timestamp), record it. Nothing is
 * stored unless every check passed.
 */
export class ModelRegistry {
  constructor(
    private readonly versions: ModelVersionStore,
    private readonly artifacts: ArtifactStore,
    private readonly targets: TargetSigner,
  ) {}

  async register(name: string, version: string, metadata: ModelMetadata, bytes: Uint8Array, now = new Date()): Promise<ModelVersionRecord> {
    if (this.versions.get(name, version)) throw new VersionExistsError(name, version);
    // The model's answer for its golden input, signed with the target: devices check a new model against it before switching.
    const golden = await checkOnnxModel(bytes, metadata);
    const { sha256, length } = this.artifacts.put(bytes);
    // Signed with the target, so a device can check every chunk (and reuse those it already has).
    const chunkManifest = await storeChunkManifest(this.artifacts, sha256);
    const target: ModelTarget = {
      path: modelTargetPath(name, version),
      length,
      hashes: { sha256 },
      custom: { name, version, format: 'onnx', metadata, createdAt: now.toISOString(), chunkManifest, golden },
    };
    // Re-check after the awaits: two uploads of one version may race.
    if (this.versions.get(name, version)) throw new VersionExistsError(name, version);
    await this.targets.addTarget(tufTargetOf(target));
    return this.versions.insert({
      name,
      version,
      sha256,
      length,
      metadata,
      target,
      createdAt: now.getTime(),
    });
  }
}
