import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { modelRefOf, type ReportedState } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSite } from '../test-support/device-site.js';
import { goldenOf } from '../test-support/golden.js';
import { waitFor } from '../test-support/harness.js';
import { fillUp, mountSmallFilesystem, type SmallFilesystem } from '../test-support/small-filesystem.js';
import { buildTinyModel } from '../test-support/tiny-model.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const DEVICE = 'gate-full';

/**
 * The agent's data folder on a real 8 MiB file system that fills up: the
 * download of a new model hits the kernel's ENOSPC, the deployment fails
 * with a `disk full:` reason, the running model keeps running, and once
 * space is back the next desired state goes through.
 */
describe('a full disk during a deployment', () => {
  let small: SmallFilesystem = { ok: false, skip: 'not mounted' };
  let site: DeviceSite | null = null;
  const small8 = buildTinyModel({ gain: 4 });
  // 64x64: ~150 KB of weights, more than the room left.
  const big = buildTinyModel({ gain: 5, width: 64, height: 64 });

  const reported = (pred: (r: ReportedState) => boolean, from = 0) => () => site?.observer.reported.slice(from).find(pred);

  beforeAll(async () => {
    small = await mountSmallFilesystem(8 * 1024 * 1024);
    if (!small.ok) return;
    site = await DeviceSite.start(DEVICE);
    await site.startAgent(
      {
        dataDir: join(small.path, 'data'),
        ffmpegPath,
        telemetry: { windowSeconds: 0.5 },
        cameras: [{ id: 'cam', fps: 10, source: { kind: 'synthetic' } }],
        download: { chunkBytes: 4096 },
        deployment: { healthWindowSeconds: 0.3, latencyFloorMs: 2000 },
      },
      'info',
    );
  });

  afterAll(async () => {
    await site?.stop();
    if (small.ok) await small.unmount();
  });

  it('ENOSPC fails the deployment as "disk full", the old model runs on, and the next desired state proceeds once there is room', async (ctx) => {
    if (!small.ok || !site?.agent) return ctx.skip(small.ok ? 'agent not started' : small.skip);
    const fs = small;
    const { cp, observer, agent } = site;
    cp.addArtifact(small8.bytes);
    cp.addArtifact(big.bytes);
    const a = cp.signTarget(small8.bytes, small8.metadata, { name: 'colours', version: '1', golden: await goldenOf(small8.bytes, small8.metadata) });
    const b = cp.signTarget(big.bytes, big.metadata, { name: 'colours', version: '2', golden: await goldenOf(big.bytes, big.metadata) });
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 1, a));
    await waitFor('a active', reported((r) => r.deployment.generation === 1 && r.deployment.phase === 'active'), 30_000);

    const ballast = await fillUp(fs, 32 * 1024);
    const from = observer.reported.length;
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 2, b));
    const failed = await waitFor('b failed', reported((r) => r.deployment.generation === 2 && r.deployment.phase === 'failed', from), 30_000);
    expect(failed.deployment.reason).toMatch(/^disk full: .*ENOSPC/);
    expect(failed).toMatchObject({ acceptedGeneration: 1, active: modelRefOf(a) });
    const pointer = () => JSON.parse(readFileSync(join(fs.path, 'data', 'active.json'), 'utf8')) as Record<string, unknown>;
    expect(pointer()).toMatchObject({ acceptedGeneration: 1, active: a.hashes.sha256 });
    // Still inferring on the old model, disk full or not.
    let results = 0;
    const count = () => results++;
    agent.pipeline.on('result', count);
    await waitFor('frames inferred after the failure', () => results >= 3);
    agent.pipeline.off('result', count);
    expect(agent.pipeline.activeModel?.target.hashes.sha256).toBe(a.hashes.sha256);

    await rm(ballast);
    const after = observer.reported.length;
    await cp.publishDesired(DEVICE, cp.desiredState(DEVICE, 3, b));
    const active = await waitFor('b active once there is room', reported((r) => r.deployment.generation === 3 && ['active', 'failed', 'rejected'].includes(r.deployment.phase), after), 30_000);
    expect(active.deployment).toMatchObject({ phase: 'active', target: modelRefOf(b) });
    expect(pointer()).toMatchObject({ acceptedGeneration: 3, active: b.hashes.sha256, knownGood: b.hashes.sha256 });
  });
});
