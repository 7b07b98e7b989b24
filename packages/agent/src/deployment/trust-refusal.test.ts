import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent.js';
import { resolveAgentConfig } from '../config/agent-config.js';
import { ControlPlaneDouble } from '../test-support/control-plane-double.js';
import { DeviceObserver } from '../test-support/device-observer.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { buildTinyModel } from '../test-support/tiny-model.js';

const DEVICE = 'gate-t';
const credentials: Record<string, string> = { [DEVICE]: 'd1', 'control-plane-double': 'cp', [`observer-${DEVICE}`]: 'obs' };
const DAY_MS = 24 * 3600 * 1000;

/**
 * A real agent against a repository whose metadata has expired (freeze):
 * the desired state is refused with the reason, nothing is fetched, and
 * once the repository is put right the same state is judged again and
 * carried out.
 */
describe('refusals by trust metadata', () => {
  let broker: TestBroker;
  let cp: ControlPlaneDouble;
  let observer: DeviceObserver;
  let dir: { path: string; remove(): Promise<void> };
  let agent: Agent;

  beforeAll(async () => {
    broker = await startBroker({ credentials });
    cp = new ControlPlaneDouble(broker.url, { username: 'control-plane-double', password: credentials['control-plane-double'] ?? '' });
    // Everything the repository signs is signed three days ago: its one-day timestamp has expired.
    cp.clock.behindMs = 3 * DAY_MS;
    await cp.start();
    observer = new DeviceObserver(broker.url, DEVICE, { username: `observer-${DEVICE}`, password: credentials[`observer-${DEVICE}`] ?? '' });
    await observer.start();
    dir = await tempDir();
    const config = await resolveAgentConfig(
      {
        deviceId: DEVICE,
        dataDir: DEVICE,
        broker: { url: broker.url, password: credentials[DEVICE], reconnect: { minMs: 50, maxMs: 500 } },
        trust: { rootFile: cp.rootFile },
        deployment: { healthWindowSeconds: 0 },
        cameras: [],
        events: { enabled: false },
        http: { enabled: false },
      },
      dir.path,
    );
    agent = new Agent(config, new CapturedLog('warn').logger);
    await agent.start();
  });

  afterAll(async () => {
    await agent?.stop();
    await observer?.stop();
    await cp?.stop();
    await broker?.close();
    await dir?.remove();
  });

  it('refuses a state while the timestamp is expired, fetching nothing, and carries it out once fresh metadata is served', async () => {
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
