import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger, type ControlPlaneConfig } from '@perch/control-plane';
import { chunkBytes } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../packages/agent/src/test-support/tiny-model.js';
import { AgentProcess } from './support/agent-process.js';
import { bearer } from './support/api-auth.js';
import { buildBackboneModel, type BackboneModel } from './support/backbone-model.js';
import { desireModel, registerModel } from './support/registry-api.js';
import { startTestControlPlane } from './support/test-control-plane.js';
import { waitUntil } from './support/wait-until.js';

/**
 * A download cut off by SIGKILL resumes from the part file when the agent
 * comes back, across real processes: a control plane (embedded broker,
 * registry, chunk server) and an agent process fetching a ~9 MB model
 * (random weights: every chunk of its manifest distinct) one chunk at a
 * time from a control plane that serves it 2 MiB/s at most, so the kill
 * lands mid-download.
 */
const DEVICE = 'resume-agent';
/** one request per manifest chunk (the largest is 1 MiB); the rate limit is what makes the download last */
const CHUNK = 1024 * 1024;
const RATE = 2 * 1024 * 1024;

let dir: string;
let cp: ControlPlane;
let cpConfig: ControlPlaneConfig;
let api: string;
let agentConfigPath: string;
let agent: AgentProcess | null = null;
/** version 1's sha256, once active */
let firstSha = '';
const model = buildBackboneModel({ side: 32, hidden: 768, seed: 21 });
/** the chunks the registry's manifest cuts a model into */
const chunksOf = (m: BackboneModel): number => chunkBytes(m.bytes).length;

interface DeviceView {
  reported: { deployment: { phase: string }; active: { sha256: string } | null } | null;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-resume-'));
  const site = await startTestControlPlane(dir, { artifacts: { maxBytesPerSecondPerDevice: RATE } });
  cp = site.cp;
  cpConfig = site.config;
  api = site.api;
  const { rootFile, claimTokenFile } = site;
  await registerVersion('1.0.0', model);
  agentConfigPath = AgentProcess.writeConfig(dir, {
    deviceId: DEVICE,
    dataDir: join(dir, DEVICE),
    broker: { url: `mqtt://127.0.0.1:${cp.mqttPort}`, claimTokenFile, reconnect: { minMs: 200, maxMs: 1000 } },
    trust: { rootFile },
    download: { chunkBytes: CHUNK, window: 1 },
    modelCache: { maxModels: 2 },
    deployment: { healthWindowSeconds: 0.5 },
    cameras: [],
    events: { enabled: false },
    http: { enabled: false },
    log: { level: 'info' },
  });
});

afterAll(async () => {
  await agent?.stop();
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a download resumes after the agent is killed', () => {
  it('SIGKILL mid-download: on restart only the missing chunks are fetched, and the model activates', async () => {
    agent = new AgentProcess(DEVICE, agentConfigPath);
    agent.start();
    await desire('1.0.0');
    const total = chunksOf(model);
    // Killed once a fifth of the chunks are on disk.
    await waitUntil(() => journalLines() >= total / 5, 'a fifth of the chunks downloaded', 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${agent?.tail() ?? ''}`);
    });
    await agent.kill();
    const doneAtKill = journalLines();
    expect(doneAtKill).toBeLessThan(total);
    const servedBefore = cp.stats.chunks.chunks;

    agent = new AgentProcess(DEVICE, agentConfigPath);
    agent.start();
    const active = await waitUntil(activeSha, 'the model active after the restart', 90_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${agent?.tail() ?? ''}`);
    });
    expect(active).toMatch(/^[0-9a-f]{64}$/);
    firstSha = active;
    const servedAfter = cp.stats.chunks.chunks - servedBefore;
    // The chunks it lacked, plus the manifest again and at most the one that was in flight at the kill; never the whole model again.
    expect(servedAfter).toBeGreaterThanOrEqual(total - doneAtKill);
    expect(servedAfter).toBeLessThanOrEqual(total - doneAtKill + 3);
    expect(agent.find((l) => l.msg === 'download resumes from the part file')).toBeDefined();
  });

  it('the broker restarted mid-download: the agent reconnects and fetches only the missing chunks', async () => {
    // A second version, so there is something new to fetch on the same running agent.
    // Other weights: nothing to copy from version 1, so every chunk comes over the link.
    const next = buildBackboneModel({ side: 32, hidden: 768, seed: 22 });
    await registerVersion('2.0.0', next);
    const before = await activeSha();
    await desire('2.0.0');
    const total = chunksOf(next);
    await waitUntil(() => journalLines() >= total / 5, 'a fifth of the chunks downloaded', 60_000);
    // The control plane and its embedded broker go away and come back on the same port and data.
    await cp.stop();
    const doneAtStop = journalLines();
    expect(doneAtStop).toBeLessThan(total);
    cp = new ControlPlane(cpConfig, createLogger('warn'));
    await cp.start();
    api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
    const active = await waitUntil(async () => {
      const sha = await activeSha();
      return sha !== null && sha !== before ? sha : null;
    }, 'version 2 active after the broker came back', 90_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${agent?.tail() ?? ''}`);
    });
    expect(active).toMatch(/^[0-9a-f]{64}$/);
    // This control plane served only what the agent lacked (and the manifest, and the request that was in flight).
    expect(cp.stats.chunks.chunks).toBeGreaterThanOrEqual(total - doneAtStop);
    expect(cp.stats.chunks.chunks).toBeLessThanOrEqual(total - doneAtStop + 3);
  });

  it('keeps the active model and the one it replaced, and removes older ones from the disk', async () => {
    const v1 = firstSha;
    expect(models()).toContain(v1);
    const small = buildTinyModel({ gain: 6 });
    await registerVersion('3.0.0', small);
    const v2 = await activeSha();
    await desire('3.0.0');
    const v3 = await waitUntil(async () => {
      const sha = await activeSha();
      return sha !== null && sha !== v2 ? sha : null;
    }, 'version 3 active', 60_000);
    await waitUntil(() => agent?.find((l) => l.msg === 'old models removed from the cache'), 'the cache pruned', 10_000);
    expect(models().sort()).toEqual([v2, v3].sort());
    expect(models()).not.toContain(v1);
  });
});

/** Chunks the agent's download journal records (0 when there is none). */
function journalLines(): number {
  try {
    const downloads = join(dir, DEVICE, 'downloads');
    const name = readdirSync(downloads).find((f) => f.endsWith('.part.journal'));
    return name === undefined ? 0 : readFileSync(join(downloads, name), 'utf8').trim().split('\n').length - 1;
  } catch {
    return 0;
  }
}

async function registerVersion(version: string, m: ReturnType<typeof buildTinyModel> | BackboneModel): Promise<void> {
  // cp.adminToken: a restarted control plane reads the same token back from its data directory.
  await registerModel({ api, adminToken: cp.adminToken }, 'big-tiny', version, { ...m.metadata, name: 'big-tiny' }, m.bytes);
}

async function desire(version: string): Promise<void> {
  await desireModel({ api, adminToken: cp.adminToken }, DEVICE, 'big-tiny', version);
}

/** The sha256s of the models in the agent's store. */
function models(): string[] {
  return readdirSync(join(dir, DEVICE, 'models'))
    .filter((f) => f.endsWith('.onnx'))
    .map((f) => f.slice(0, 64));
}

async function activeSha(): Promise<string | null> {
  const v = (await (await fetch(`${api}/devices/${DEVICE}`, { headers: bearer(cp.adminToken) })).json()) as DeviceView;
  return v.reported?.deployment.phase === 'active' && v.reported.active ? v.reported.active.sha256 : null;
}
