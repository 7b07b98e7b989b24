import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel, type TinyModel } from '../packages/agent/src/test-support/tiny-model.js';
import { AgentProcess } from './support/agent-process.js';
import { bearer } from './support/api-auth.js';
import { desireModel, registerModel } from './support/registry-api.js';
import { startTestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * TUF in the field, across real processes: a control plane with its TUF
 * repository, and an agent provisioned with root version 1 only. Keys rotate
 * and are revoked through the REST API; the agent learns each new root over
 * MQTT by itself. Downgrades need a signed rollback.
 */
const DEVICE = 'trust-agent';

let dir: string;
let cp: ControlPlane;
let api: string;
let adminToken: string;
let agent: AgentProcess;
const v1 = buildTinyModel({ gain: 1 + 3 });
const v2 = buildTinyModel({ gain: 2 + 3 });
const v3 = buildTinyModel({ gain: 3 + 3 });

interface DeviceView {
  reported: { acceptedGeneration: number; deployment: { phase: string; generation: number; reason?: string }; active: { version: string } | null } | null;
}

async function register(version: string, m: TinyModel): Promise<void> {
  await registerModel({ api, adminToken }, 'gate-model', version, m.metadata, m.bytes);
}

function desire(version: string, rollback = false): Promise<number> {
  return desireModel({ api, adminToken }, DEVICE, 'gate-model', version, { rollback });
}

async function settled(generation: number): Promise<NonNullable<DeviceView['reported']>> {
  return waitUntil(
    async () => {
      const r = ((await (await fetch(`${api}/devices/${DEVICE}`, { headers: bearer(adminToken) })).json()) as DeviceView).reported;
      return r && r.deployment.generation === generation && ['active', 'rejected', 'failed', 'rolled-back'].includes(r.deployment.phase) ? r : null;
    },
    `generation ${generation} settled`,
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${agent.tail()}`);
  });
}

function localRootVersion(): number {
  const root = JSON.parse(readFileSync(join(dir, DEVICE, 'tuf', 'root.json'), 'utf8')) as { signed: { version: number } };
  return root.signed.version;
}

async function rootKeyIds(role: string): Promise<string[]> {
  const root = (await (await fetch(`${api}/trust/root`)).json()) as { signed: { version: number; roles: Record<string, { keyids: string[] }> } };
  return root.signed.roles[role]?.keyids ?? [];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-trust-'));
  const site = await startTestControlPlane(dir);
  ({ cp, api, adminToken } = site);
  const configPath = AgentProcess.writeConfig(dir, {
    deviceId: DEVICE,
    dataDir: join(dir, DEVICE),
    broker: { url: `mqtt://127.0.0.1:${cp.mqttPort}`, claimTokenFile: site.claimTokenFile, reconnect: { minMs: 200, maxMs: 1000 } },
    trust: { rootFile: site.rootFile },
    deployment: { healthWindowSeconds: 0 },
    cameras: [],
    events: { enabled: false },
    http: { enabled: false },
    log: { level: 'info' },
  });
  for (const [version, m] of [['1.0.0', v1], ['2.0.0', v2], ['3.0.0', v3]] as const) await register(version, m);
  agent = new AgentProcess(DEVICE, configPath);
  agent.start();
});

afterAll(async () => {
  await agent?.stop();
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('trusted delivery with real processes', () => {
  it('activates a model the targets role signed, with root version 1 as its only trust', async () => {
    const r = await settled(await desire('2.0.0'));
    expect(r.deployment.phase).toBe('active');
    expect(r.active?.version).toBe('2.0.0');
    expect(localRootVersion()).toBe(1);
  });

  it('refuses a downgrade, then carries out the same model as a signed rollback', async () => {
    const refused = await settled(await desire('1.0.0'));
    expect(refused.deployment).toMatchObject({ phase: 'rejected', reason: expect.stringMatching(/^downgrade: gate-model 1\.0\.0 .* older than the running 2\.0\.0/) });
    expect(refused.active?.version).toBe('2.0.0');
    const rolledBack = await settled(await desire('1.0.0', true));
    expect(rolledBack.deployment.phase).toBe('active');
    expect(rolledBack.active?.version).toBe('1.0.0');
  });

  it('follows a rotation of the desired key: the new root comes over MQTT and the old key is no longer trusted', async () => {
    const [oldKey] = await rootKeyIds('desired');
    const res = await fetch(`${api}/trust/roles/desired/rotate-key`, { method: 'POST', headers: bearer(adminToken) });
    expect(res.status, await res.clone().text()).toBe(200);
    const [newKey] = await rootKeyIds('desired');
    expect(newKey).toBeDefined();
    expect(newKey).not.toBe(oldKey);
    // Signed by the new key, which only root version 2 lists: the agent walks to it by itself.
    const r = await settled(await desire('3.0.0'));
    expect(r.deployment.phase).toBe('active');
    expect(r.active?.version).toBe('3.0.0');
    expect(localRootVersion()).toBe(2);
  });

  it('follows a revocation of the targets key: the new root drops it, and targets signed by its replacement are trusted', async () => {
    const [oldTargetsKey] = await rootKeyIds('targets');
    expect(oldTargetsKey).toBeDefined();
    const res = await fetch(`${api}/trust/keys/${oldTargetsKey}/revoke`, { method: 'POST', headers: bearer(adminToken) });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await rootKeyIds('targets')).not.toContain(oldTargetsKey);
    // A new version, listed in targets signed by the replacement key.
    await register('4.0.0', buildTinyModel({ gain: 4 + 3 }));
    const r = await settled(await desire('4.0.0'));
    expect(r.deployment.phase).toBe('active');
    expect(r.active?.version).toBe('4.0.0');
    expect(localRootVersion()).toBe(3);
  });
});
