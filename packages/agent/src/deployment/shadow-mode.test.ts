import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { histogramCount, modelRefOf, shadowWindowSchema, type ModelTarget, type ReportedState, type ShadowWindow, type TelemetryWindow } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceSite } from '../test-support/device-site.js';
import { goldenOf } from '../test-support/golden.js';
import { waitFor } from '../test-support/harness.js';
import { buildTinyModel, type TinyModel } from '../test-support/tiny-model.js';
import { makeTestVideo } from '../test-support/video-file.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const DEVICE = 'gate-s';

/**
 * Champion and challenger on a real agent (real broker, TUF repository,
 * onnxruntime workers, ffmpeg cameras). Camera `mix` shows ffmpeg's moving
 * test pattern, camera `blue` a blue clip. The tiny models name a frame's
 * dominant colour channel; the twin does the same with other weights, the
 * garbage model puts the wrong name on every channel, and the one signed
 * with another model's golden output must never run.
 */
describe('shadow mode: a challenger beside the champion', () => {
  let site: DeviceSite;
  const models: Record<'champion' | 'twin' | 'garbage' | 'goldenless' | 'unsigned', TinyModel> = {
    champion: buildTinyModel({ gain: 4 }),
    twin: buildTinyModel({ gain: 6 }),
    garbage: buildTinyModel({ gain: 5, labels: ['blue', 'red', 'green'] }),
    goldenless: buildTinyModel({ gain: 7 }),
    unsigned: buildTinyModel({ gain: 8 }),
  };
  const targets = {} as Record<keyof typeof models, ModelTarget>;
  const sha = (k: keyof typeof models) => targets[k].hashes.sha256;
  let generation = 0;

  /** Publishes the next generation and returns it. */
  async function desire(active: keyof typeof models, shadow?: ModelTarget | null, shadowSampleRate?: number): Promise<number> {
    generation++;
    await site.cp.publishDesired(DEVICE, site.cp.desiredState(DEVICE, generation, targets[active], { ...(shadow !== undefined ? { shadow } : {}), ...(shadowSampleRate ? { shadowSampleRate } : {}) }));
    return generation;
  }

  const reported = (pred: (r: ReportedState) => boolean, from = 0) => () => site.observer.reported.slice(from).find(pred);
  const shadowReported = (g: number, phase: NonNullable<ReportedState['shadow']>['phase']) =>
    waitFor(`challenger ${phase} at generation ${g}`, reported((r) => r.shadow?.generation === g && r.shadow.phase === phase));
  const championActive = (g: number) => waitFor(`generation ${g} active`, reported((r) => r.deployment.generation === g && r.deployment.phase === 'active'));

  /** Windows published from now on with `challenger` in shadow, until their comparisons reach `frames`. */
  async function comparisons(challenger: keyof typeof models, frames: number): Promise<TelemetryWindow[]> {
    const from = site.observer.telemetry.length;
    const windows = () => site.observer.telemetry.slice(from).filter((w) => w.shadow?.model.sha256 === sha(challenger));
    await waitFor(`${frames} frames compared with ${challenger}`, () => windows().reduce((n, w) => n + (w.shadow?.framesCompared ?? 0), 0) >= frames, 60_000);
    return windows();
  }

  function total(windows: TelemetryWindow[]) {
    const s = windows.map((w) => w.shadow).filter((x): x is ShadowWindow => x !== undefined);
    const sum = (f: (x: ShadowWindow) => number) => s.reduce((n, x) => n + f(x), 0);
    const pairs = new Map<string, number>();
    for (const x of s) for (const p of x.confusion) pairs.set(`${p.champion}>${p.challenger}`, (pairs.get(`${p.champion}>${p.challenger}`) ?? 0) + p.count);
    return {
      compared: sum((x) => x.framesCompared),
      agreed: sum((x) => x.agreed),
      sampled: sum((x) => x.framesCompared + x.skippedBusy + x.errors),
      inferred: windows.reduce((n, w) => n + w.cameras.reduce((m, c) => m + c.framesInferred + c.inferenceErrors, 0), 0),
      pairs,
    };
  }

  beforeAll(async () => {
    site = await DeviceSite.start(DEVICE);
    await makeTestVideo(ffmpegPath, join(site.dir.path, 'mix.mp4'), { seconds: 2, rate: 10 });
    await makeTestVideo(ffmpegPath, join(site.dir.path, 'blue.mp4'), { pattern: 'color=c=blue', seconds: 1, rate: 10 });
    for (const [k, m] of Object.entries(models) as [keyof typeof models, TinyModel][]) {
      site.cp.addArtifact(m.bytes);
      // The goldenless model carries the champion's golden output: it must fail its golden input.
      const golden = await goldenOf(k === 'goldenless' ? models.champion.bytes : m.bytes, m.metadata, 5);
      targets[k] = site.cp.signTarget(m.bytes, m.metadata, { name: 'colours', version: k, golden, listed: k !== 'unsigned' });
    }
    await site.startAgent({
      ffmpegPath,
      telemetry: { windowSeconds: 0.5 },
      cameras: [
        { id: 'mix', fps: 10, source: { kind: 'file', path: 'mix.mp4' } },
        { id: 'blue', fps: 10, source: { kind: 'file', path: 'blue.mp4' } },
      ],
      // Latency is judged in health-verdict.test.ts: a loaded test machine must not fail these windows.
      deployment: { healthWindowSeconds: 1, minFrames: 5, latencyFloorMs: 2000 },
      events: { debounceFrames: 2, updateIntervalMs: 200, snapshots: { enabled: false } },
    });
  });

  afterAll(() => site?.stop());

  it('an identical challenger agrees on (nearly) every frame, on the sampled share of the champion frames, with both run times', async () => {
    const g = await desire('champion', targets.twin, 0.5);
    await championActive(g);
    await shadowReported(g, 'running');
    const windows = await comparisons('twin', 40);
    for (const w of windows) expect(shadowWindowSchema.parse(w.shadow)).toBeTruthy();
    // The first window may hold champion frames from before the challenger started.
    const t = total(windows.slice(1));
    expect(t.agreed / t.compared).toBeGreaterThanOrEqual(0.99);
    for (const key of t.pairs.keys()) expect(key.split('>')[0]).toBe(key.split('>')[1]);
    expect(t.pairs.get('blue>blue')).toBeGreaterThan(0);
    // Half of the champion's frames, give or take the frames in flight at the windows' edges.
    expect(t.sampled).toBeGreaterThanOrEqual(0.5 * t.inferred * 0.9 - 4);
    expect(t.sampled).toBeLessThanOrEqual(0.5 * t.inferred * 1.1 + 4);
    const last = windows.at(-1)?.shadow;
    expect(last?.sampleRate).toBe(0.5);
    expect(histogramCount(last!.championInferenceMs)).toBe(last?.framesCompared);
    expect(histogramCount(last!.challengerInferenceMs)).toBe(last?.framesCompared);
    // Every comparison is counted against its camera. One 0.5 s window may miss a camera (its clip
    // restarting, or its sampled frames skipped while the challenger was busy), so both are looked for
    // across the windows.
    for (const w of windows) expect(w.shadow!.cameras.reduce((n, c) => n + c.framesCompared, 0)).toBe(w.shadow!.framesCompared);
    expect([...new Set(windows.slice(1).flatMap((w) => w.shadow!.cameras.map((c) => c.cameraId)))].sort()).toEqual(['blue', 'mix']);
    // Only the champion counts classes: the window's model is the champion.
    expect(windows.every((w) => w.model?.sha256 === sha('champion'))).toBe(true);
    const metrics = await site.agent!.metrics.text();
    expect(metrics).toMatch(/^perch_agent_shadow_agreement_ratio 0\.99\d*|^perch_agent_shadow_agreement_ratio 1$/m);
    expect(metrics).toContain(`perch_agent_shadow_model_info{name="colours",version="twin",sha256="${sha('twin')}"} 1`);
    expect(metrics).toMatch(/^perch_agent_shadow_inference_seconds_count\{role="challenger"\} [1-9]/m);
  });

  it('a garbage challenger agrees on almost nothing, and events still come from the champion alone', async () => {
    const g = await desire('champion', targets.garbage, 1);
    await shadowReported(g, 'running');
    const since = Date.now();
    const t = total((await comparisons('garbage', 40)).slice(1));
    expect(t.agreed / t.compared).toBeLessThan(0.5);
    // The blue clip: the champion says blue, the garbage model green.
    expect(t.pairs.get('blue>green')).toBeGreaterThan(0);
    expect(t.pairs.get('blue>blue')).toBeUndefined();
    expect(t.sampled).toBeGreaterThanOrEqual(t.inferred * 0.9 - 4);
    const events = await waitFor('events on the blue camera', () => {
      const e = site.observer.events.filter((e) => e.cameraId === 'blue' && e.at >= since);
      return e.length >= 2 ? e : undefined;
    });
    expect(new Set(events.map((e) => e.label))).toEqual(new Set(['blue']));
    expect(site.observer.events.some((e) => e.cameraId === 'blue' && e.label === 'green')).toBe(false);
  });

  it('a challenger failing its golden input is rejected, and the champion runs on untouched', async () => {
    const from = site.observer.reported.length;
    const g = await desire('champion', targets.goldenless);
    const r = await shadowReported(g, 'rejected');
    expect(r.shadow).toMatchObject({ target: modelRefOf(targets.goldenless), sampleRate: 0.25 });
    expect(r.shadow?.reason).toMatch(/^golden input: max difference/);
    const active = await championActive(g);
    expect(active.active).toEqual(modelRefOf(targets.champion));
    expect(site.observer.reported.slice(from).some((x) => x.deployment.generation === g && x.deployment.phase !== 'queued' && x.deployment.phase !== 'active')).toBe(false);
    // The garbage challenger stopped with the state that no longer names it; none runs.
    expect(site.agent!.pipeline.shadowModel).toBeNull();
    expect(site.agent!.pipeline.activeModel?.target.hashes.sha256).toBe(sha('champion'));
    const after = site.observer.telemetry.length;
    const w = await waitFor('champion frames with no challenger', () => site.observer.telemetry.slice(after + 1).find((x) => (x.cameras[0]?.framesInferred ?? 0) > 0));
    expect(w.shadow).toBeUndefined();
  });

  it('a challenger the targets role never signed, or described otherwise than signed, is refused like a champion, fetching nothing', async () => {
    const requests = site.cp.requests.length;
    const g1 = await desire('champion', targets.unsigned);
    const unsigned = await shadowReported(g1, 'rejected');
    expect(unsigned.shadow?.reason).toBe('arbitrary model: target models/colours/unsigned.onnx is not in the signed targets metadata');
    await championActive(g1);

    const tampered: ModelTarget = { ...targets.twin, custom: { ...targets.twin.custom, createdAt: '2020-01-01T00:00:00.000Z' } };
    const g2 = await desire('champion', tampered);
    const mixed = await shadowReported(g2, 'rejected');
    expect(mixed.shadow?.reason).toMatch(/^mix-and-match: /);
    await championActive(g2);
    expect(site.cp.requests.length).toBe(requests);
    expect(site.agent!.pipeline.shadowModel).toBeNull();
  });

  it('promotion swaps the roles from the store: the challenger becomes the champion with nothing downloaded', async () => {
    const g1 = await desire('champion', targets.twin);
    await shadowReported(g1, 'running');
    const requests = site.cp.requests.length;
    const from = site.observer.reported.length;
    const g2 = await desire('twin', targets.champion);
    const r = await championActive(g2);
    expect(r.active).toEqual(modelRefOf(targets.twin));
    // The usual way in (golden input, health window), from the store: no downloading phase, no request.
    const phases = site.observer.reported
      .slice(from)
      .filter((x) => x.deployment.generation === g2)
      .map((x) => x.deployment.phase)
      .filter((p, i, all) => p !== all[i - 1]);
    expect(phases).toEqual(['queued', 'verifying', 'ready', 'activating', 'health-check', 'active']);
    const shadow = await shadowReported(g2, 'running');
    expect(shadow.shadow?.target).toEqual(modelRefOf(targets.champion));
    expect(site.cp.requests.length).toBe(requests);
    const pointer = JSON.parse(readFileSync(join(site.dir.path, DEVICE, 'active.json'), 'utf8')) as Record<string, unknown>;
    expect(pointer).toEqual({ acceptedGeneration: g2, active: sha('twin'), knownGood: sha('twin') });
    const windows = await comparisons('champion', 20);
    expect(windows.every((w) => w.model?.sha256 === sha('twin'))).toBe(true);
    const t = total(windows);
    expect(t.agreed / t.compared).toBeGreaterThanOrEqual(0.99);
  });

  it('after a restart the challenger comes back from the store with the retained state; a state without one stops it', async () => {
    await site.agent!.stop();
    const from = site.observer.reported.length;
    const requests = site.cp.requests.length;
    await site.startAgent({
      ffmpegPath,
      telemetry: { windowSeconds: 0.5 },
      cameras: [{ id: 'blue', fps: 10, source: { kind: 'file', path: 'blue.mp4' } }],
      deployment: { healthWindowSeconds: 1, minFrames: 5, latencyFloorMs: 2000 },
      events: { enabled: false },
    });
    await waitFor('challenger back', reported((r) => r.shadow?.generation === generation && r.shadow.phase === 'running', from));
    expect(site.agent!.pipeline.shadowModel?.target.hashes.sha256).toBe(sha('champion'));
    expect(site.cp.requests.length).toBe(requests);

    const g = await desire('twin');
    await championActive(g);
    await waitFor('no challenger reported', () => site.observer.lastReported?.deployment.generation === g && site.observer.lastReported.shadow === undefined);
    expect(site.agent!.pipeline.shadowModel).toBeNull();
    const after = site.observer.telemetry.length;
    const w = await waitFor('a window with no challenger', () => site.observer.telemetry.slice(after + 1).find((x) => (x.cameras[0]?.framesInferred ?? 0) > 0));
    expect(w.shadow).toBeUndefined();
    expect(site.observer.invalid).toEqual([]);
  });
});
