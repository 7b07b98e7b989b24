import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { modelRefOf, shadowWindowSchema, type ModelMetadata, type ShadowWindow } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../log/logger.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import { tempDir, waitFor } from '../test-support/harness.js';
import { buildTinyModel, solidFrame, tinyModelTarget, type TinyModel } from '../test-support/tiny-model.js';
import { challengerInput } from './challenger-input.js';
import { FrameScheduler } from './frame-scheduler.js';
import { InferenceRunner } from './inference-runner.js';
import { ShadowRunner } from './shadow-runner.js';

const COLOURS = ['red', 'green', 'blue'] as const;

/**
 * A challenger fed by a real scheduler from a real champion (onnxruntime in
 * worker threads), each input way: the champion's preprocessed input as it
 * is, the frame preprocessed the challenger's way, the frame rescaled. Three
 * cameras show one solid colour each and the champion batches them, so a
 * challenger handed another camera's input would disagree.
 */
describe('a challenger fed from the frames the champion ran on', () => {
  let dir: { path: string; remove(): Promise<void> };
  const champion = buildTinyModel({ batch: 'dynamic' });
  const twin = buildTinyModel({ gain: 6 });
  const bigger = buildTinyModel({ gain: 6, width: 16, height: 16 });
  const garbage = buildTinyModel({ gain: 5, labels: ['blue', 'red', 'green'] });
  const paths = new Map<TinyModel, string>();

  beforeAll(async () => {
    dir = await tempDir();
    for (const [i, m] of [champion, twin, bigger, garbage].entries()) {
      const path = join(dir.path, `m${i}.onnx`);
      await writeFile(path, m.bytes);
      paths.set(m, path);
    }
  });
  afterAll(() => dir.remove());

  /** Runs `frames` champion results with `challenger` in shadow at `rate`; returns the window's shadow section and the champion's results per camera. */
  async function shadowRun(challenger: TinyModel, metadata: ModelMetadata, rate: number, frames: number): Promise<{ section: ShadowWindow; perCamera: Map<string, number> }> {
    const log = createLogger('silent');
    const main = new InferenceRunner({ modelPath: paths.get(champion) ?? '', metadata: champion.metadata, intraOpThreads: 1, maxBatch: 3 });
    const second = new InferenceRunner({ modelPath: paths.get(challenger) ?? '', metadata, intraOpThreads: 1, maxBatch: 1 });
    await main.start();
    await second.start();
    const aggregator = new WindowAggregator([...COLOURS]);
    const target = tinyModelTarget({ bytes: challenger.bytes, metadata }, 'challenger');
    aggregator.switchShadow({ model: modelRefOf(target), sampleRate: rate });
    const shadow = new ShadowRunner({ modelPath: '', target }, second, rate, aggregator, log);
    const scheduler = new FrameScheduler(aggregator, log, { maxBatchDelayMs: 0 });
    const perCamera = new Map<string, number>();
    let offering = true;
    const count = { offered: 0, dispatched: 0, answered: 0 };
    const offer = (id: string) => {
      count.offered++;
      scheduler.offer(id, frameOf(id), performance.now());
    };
    scheduler.on('result', (r) => {
      count.answered++;
      perCamera.set(r.cameraId, (perCamera.get(r.cameraId) ?? 0) + 1);
    });
    scheduler.on('dispatched', (ids) => {
      count.dispatched += ids.length;
      // A camera offers its next frame only once its last was taken: none is ever dropped.
      if (offering) for (const id of ids) offer(id);
    });
    scheduler.setTap(shadow);
    scheduler.setRunner(main);
    scheduler.start();
    try {
      for (const id of COLOURS) offer(id);
      await waitFor('champion results', () => count.answered >= frames);
      offering = false;
      // Every frame offered was taken and answered, and the challenger answered what it took.
      await waitFor('runs drained', () => count.offered === count.dispatched && count.answered === count.dispatched && second.inFlight === 0);
      const closed = aggregator.close();
      if (!closed?.shadow) throw new Error('no shadow section');
      return { section: closed.shadow, perCamera };
    } finally {
      await scheduler.stop();
      await shadow.stop();
      await main.stop();
    }
  }

  function frameOf(id: string): Uint8Array {
    return id === 'red' ? solidFrame(220, 30, 30) : id === 'green' ? solidFrame(30, 220, 30) : solidFrame(30, 30, 220);
  }

  /** The sampler's picks over n frames of each camera: floor(n x rate). */
  const picks = (perCamera: Map<string, number>, rate: number) => [...perCamera.values()].reduce((n, c) => n + Math.floor(c * rate), 0);

  it('runs the champion input as it is when both preprocess alike, on exactly the sampled share', async () => {
    expect(challengerInput(champion.metadata, twin.metadata).kind).toBe('shared');
    const { section, perCamera } = await shadowRun(twin, twin.metadata, 0.5, 150);
    expect(shadowWindowSchema.parse(section)).toBeTruthy();
    expect(section.framesCompared + section.skippedBusy + section.errors).toBe(picks(perCamera, 0.5));
    expect(section.framesCompared).toBeGreaterThan(0);
    expect(section.errors).toBe(0);
    expect(section.agreed).toBe(section.framesCompared);
    for (const p of section.confusion) expect(p.challenger).toBe(p.champion);
    expect(section.cameras.map((c) => c.cameraId).sort()).toEqual(['blue', 'green', 'red']);
  });

  it('preprocesses the frame again for a challenger that normalises otherwise', async () => {
    const metadata: ModelMetadata = { ...twin.metadata, normalization: { ...twin.metadata.normalization, scale: 2 / 255 } };
    expect(challengerInput(champion.metadata, metadata).kind).toBe('frame');
    const { section, perCamera } = await shadowRun(twin, metadata, 1, 90);
    expect(section.framesCompared + section.skippedBusy + section.errors).toBe(picks(perCamera, 1));
    expect(section.framesCompared).toBeGreaterThan(0);
    expect(section.agreed).toBe(section.framesCompared);
  });

  it('rescales the frame for a challenger of another input size', async () => {
    expect(challengerInput(champion.metadata, bigger.metadata).kind).toBe('resample');
    const { section } = await shadowRun(bigger, bigger.metadata, 0.25, 120);
    expect(section.framesCompared).toBeGreaterThan(0);
    expect(section.errors).toBe(0);
    expect(section.agreed).toBe(section.framesCompared);
  });

  it('counts a garbage challenger as disagreeing, pair by pair', async () => {
    const { section } = await shadowRun(garbage, garbage.metadata, 1, 90);
    expect(section.framesCompared).toBeGreaterThan(0);
    expect(section.agreed).toBe(0);
    const pairs = new Set(section.confusion.map((p) => `${p.champion}>${p.challenger}`));
    for (const p of pairs) expect(['red>blue', 'green>red', 'blue>green']).toContain(p);
  });
});
