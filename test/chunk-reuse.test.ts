import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, type LogLine } from './support/agent-process.js';
import { bearer } from './support/api-auth.js';
import { buildBackboneModel, type BackboneModel } from './support/backbone-model.js';
import { chunkManifestRefFor } from './support/chunk-manifest-ref.js';
import { desireModel, registerModel } from './support/registry-api.js';
import { startTestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * A head-only fine-tune reaches a real agent process as the few chunks
 * that changed: the agent keeps each model's signed chunk manifest beside
 * it and copies every chunk the new version shares with it (checked
 * against the new manifest) instead of downloading it.
 */
const DEVICE = 'reuse-agent';
/** ~7.5 MiB of backbone weights (3072 x 640 floats) and a 640 x 3 head. */
const v1 = buildBackboneModel({ side: 32, hidden: 640, seed: 11, headSeed: 1 });
const fineTuned = buildBackboneModel({ side: 32, hidden: 640, seed: 11, headSeed: 2 });

let dir: string;
let cp: ControlPlane;
let api: string;
let adminToken: string;
let agent: AgentProcess | null = null;

interface DeviceView {
  reported: { deployment: { phase: string; generation: number }; active: { sha256: string } | null } | null;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-reuse-'));
  const site = await startTestControlPlane(dir);
  cp = site.cp;
  api = site.api;
  adminToken = site.adminToken;
  const configPath = AgentProcess.writeConfig(dir, {
    deviceId: DEVICE,
    dataDir: join(dir, DEVICE),
    broker: { url: `mqtt://127.0.0.1:${cp.mqttPort}`, claimTokenFile: site.claimTokenFile, reconnect: { minMs: 200, maxMs: 1000 } },
    trust: { rootFile: site.rootFile },
    cameras: [],
    // No camera runs, so there is nothing to watch: trusted at once.
    deployment: { healthWindowSeconds: 0 },
    events: { enabled: false },
    http: { enabled: false },
    log: { level: 'info' },
  });
  agent = new AgentProcess(DEVICE, configPath);
  agent.start();
});

afterAll(async () => {
  await agent?.stop();
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('reuse of chunks across versions', () => {
  it('a head-only fine-tune downloads only the chunks that changed, and says so in its log', async () => {
    const first = await register('1.0.0', v1);
    await deliver('1.0.0', first.sha256);
    const firstLine = downloadLine(first.sha256);
    expect(firstLine).toMatchObject({ fetched: first.length, reused: 0 });

    const second = await register('1.1.0', fineTuned);
    expect(second.sha256).not.toBe(first.sha256);
    const served = cp.stats.chunks.bytes;
    await deliver('1.1.0', second.sha256);
    const line = downloadLine(second.sha256);
    const fetched = Number(line['fetched']);
    const reused = Number(line['reused']);
    // Where the bytes came from adds up to the model.
    expect(fetched + reused + Number(line['duplicated']) + Number(line['resumed'])).toBe(second.length);
    expect(reused).toBeGreaterThanOrEqual(0.9 * second.length);
    expect(fetched).toBeLessThanOrEqual(0.1 * second.length);
    expect(fetched).toBeGreaterThan(0);
    // The control plane sent the new manifest and the changed chunks, nothing else.
    expect(cp.stats.chunks.bytes - served).toBe(fetched + second.manifestLength);
    // Each installed model keeps its manifest for the next version.
    const kept = readdirSync(join(dir, DEVICE, 'models')).filter((f) => f.endsWith('.chunks.json'));
    expect(kept.sort()).toEqual([`${first.sha256}.chunks.json`, `${second.sha256}.chunks.json`].sort());
  });
});

async function register(version: string, m: BackboneModel): Promise<{ sha256: string; length: number; manifestLength: number }> {
  const body = await registerModel({ api, adminToken }, 'backbone', version, m.metadata, m.bytes);
  return { sha256: body.sha256, length: body.length, manifestLength: chunkManifestRefFor(m.bytes).length };
}

async function deliver(version: string, sha256: string): Promise<void> {
  await desireModel({ api, adminToken }, DEVICE, 'backbone', version);
  const settled = await waitUntil(async () => {
    const v = (await (await fetch(`${api}/devices/${DEVICE}`, { headers: bearer(adminToken) })).json()) as DeviceView;
    const d = v.reported?.deployment;
    if (d?.phase === 'rejected' || d?.phase === 'failed') return d.phase;
    return d?.phase === 'active' && v.reported?.active?.sha256 === sha256 ? d.phase : null;
  }, `${version} active`, 90_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${agent?.tail() ?? ''}`);
  });
  expect(settled, agent?.tail()).toBe('active');
}

function downloadLine(sha256: string): LogLine {
  const line = agent?.find((l) => l.msg === 'download complete' && l['sha256'] === sha256);
  if (!line) throw new Error(`no 'download complete' line for ${sha256}\n${agent?.tail() ?? ''}`);
  return line;
}
