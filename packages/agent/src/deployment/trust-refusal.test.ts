import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSite } from '../test-support/device-site.js';
import { waitFor } from '../test-support/harness.js';
import { buildTinyModel } from '../test-support/tiny-model.js';

const DEVICE = 'gate-t';
const DAY_MS = 24 * 3600 * 1000;

/**
 * A real agent against a repository whose metadata has expired (freeze):
 * the desired state is refused with the reason, nothing is fetched, and
 * once the repository is put right the same state is judged again and
 * carried out.
 */
describe('refusals by trust metadata', () => {
  let site: DeviceSite;

  beforeAll(async () => {
    // Everything the repository signs is signed three days ago: its one-day timestamp has expired.
    site = await DeviceSite.start(DEVICE, (cp) => (cp.clock.behindMs = 3 * DAY_MS));
    await site.startAgent({ deployment: { healthWindowSeconds: 0 }, cameras: [] });
  });

  afterAll(() => site?.stop());

  it('refuses a state while the timestamp is expired, fetching nothing, and carries it out once fresh metadata is served', async () => {
    const { cp, observer } = site;
    const model = buildTinyModel();
    cp.addArtifact(model.bytes);
    const desired = cp.desiredState(DEVICE, 1, cp.signTarget(model.bytes, model.metadata, { name: 'colours', version: '1' }));
    await cp.publishDesired(DEVICE, desired);
    const refused = await waitFor('refusal', () => observer.reported.find((r) => r.deployment.generation === 1 && r.deployment.phase === 'rejected'));
    expect(refused.deployment.reason).toMatch(/^trust metadata: expired metadata \(freeze attack\): timestamp\.json/);
    expect(refused.active).toBeNull();
    expect(cp.requests).toHaveLength(0);

    // The repository's clock put right and its online roles signed afresh; the same state, delivered again.
    cp.clock.behindMs = 0;
    await cp.repository.refreshExpiring();
    await cp.publishDesired(DEVICE, desired);
    const active = await waitFor('active', () => observer.reported.find((r) => r.deployment.generation === 1 && r.deployment.phase === 'active'));
    expect(active.active?.name).toBe('colours');
  });
});
