import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../log/logger.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import { tempDir } from '../test-support/harness.js';
import { buildTinyModel, solidFrame } from '../test-support/tiny-model.js';
import { FrameScheduler, type FrameResult } from './frame-scheduler.js';
import { InferenceRunner, type BatchResult } from './inference-runner.js';
import type { BatchingPolicy } from './worker-protocol.js';


/** A real runner that also records how many frames each run carried. */
class CountingRunner extends InferenceRunner {
  readonly sizes: number[] = [];
  override runBatch(frames: Uint8Array[]): Promise<BatchResult> {
    this.sizes.push(frames.length);
    return super.runBatch(frames);
  }
}

describe('batching frames of several cameras into one run', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  async function runner(batch: number | 'dynamic', maxBatch: number, batching: BatchingPolicy = 'always'): Promise<CountingRunner> {
    const model = buildTinyModel({ batch, kind: 'logits' });
    const path = join(dir.path, `m-${String(batch)}.onnx`);
    await writeFile(path, model.bytes);
    const r = new CountingRunner({ modelPath: path, metadata: model.metadata, intraOpThreads: 1, maxBatch, batching });
    await r.start();
    return r;
  }

  it('runs a batch with the same answers as one frame at a time', async () => {
    const r = await runner('dynamic', 4);
    try {
      expect(r.maxBatch).toBe(4);
      const frames = [solidFrame(255, 0, 0), solidFrame(0, 255, 0), solidFrame(0, 0, 255)];
      const singles: Float32Array[] = [];
      for (const f of frames) singles.push((await r.run(f.slice())).probabilities);
      const batch = await r.runBatch(frames);
      expect(batch.results).toHaveLength(3);
      batch.results.forEach((res, i) => {
        expect(Array.from(res.probabilities)).toEqual(Array.from(singles[i] ?? []));
        // Each result carries its own frame, in order.
        expect(res.frame).toBe(frames[i]);
      });
      expect(batch.results[1]?.frame[1]).toBe(255);
      await expect(r.runBatch([solidFrame(1, 1, 1), solidFrame(1, 1, 1), solidFrame(1, 1, 1), solidFrame(1, 1, 1), solidFrame(1, 1, 1)])).rejects.toThrow(/1 to 4 frames/);
    } finally {
      await r.stop();
    }
  });

  it("with batching 'auto' the worker times a batch against single frames at load and batches only if a batch is cheaper per frame", async () => {
    const r = await runner('dynamic', 4, 'auto');
    try {
      const c = r.calibration;
      expect(c).toBeDefined();
      if (!c) return;
      expect(c.batch).toBe(4);
      expect(c.singleMs).toBeGreaterThan(0);
      expect(c.batchPerFrameMs).toBeGreaterThan(0);
      // The decision follows the figures: a batch must cost at most 80 % of a single frame, per frame.
      expect(r.maxBatch).toBe(c.batchPerFrameMs <= 0.8 * c.singleMs ? 4 : 1);
      // This model is a few operators: a run's fixed cost dominates, and four frames share it.
      expect(c.batchPerFrameMs).toBeLessThan(0.8 * c.singleMs);
      const frames = [solidFrame(255, 0, 0), solidFrame(0, 255, 0)];
      expect((await r.runBatch(frames)).results).toHaveLength(2);
    } finally {
      await r.stop();
    }
    // 'always' and a fixed batch measure nothing.
    for (const [batch, batching, maxBatch] of [['dynamic', 'always', 4], [1, 'auto', 1]] as const) {
      const other = await runner(batch, 4, batching);
      try {
        expect(other.calibration).toBeUndefined();
        expect(other.maxBatch).toBe(maxBatch);
      } finally {
        await other.stop();
      }
    }
  });

  it('keeps a model with a fixed batch of 1 at one frame per run', async () => {
    const r = await runner(1, 4);
    try {
      expect(r.maxBatch).toBe(1);
    } finally {
      await r.stop();
    }
  });

  it('the scheduler fills a batch from several cameras and attributes each result to its camera', async () => {
    const r = await runner('dynamic', 4);
    const aggregator = new WindowAggregator(['a', 'b', 'c']);
    const scheduler = new FrameScheduler(aggregator, createLogger('silent'), { maxBatchDelayMs: 50 });
    const results: FrameResult[] = [];
    scheduler.on('result', (res) => results.push(res));
    scheduler.setRunner(r);
    scheduler.start();
    try {
      const colours: Record<string, [number, number, number]> = { a: [255, 0, 0], b: [0, 255, 0], c: [0, 0, 255] };
      for (let round = 0; round < 10; round++) {
        for (const [cam, rgb] of Object.entries(colours)) scheduler.offer(cam, solidFrame(...rgb), performance.now());
        const want = (round + 1) * 3;
        for (let i = 0; i < 200 && results.length < want; i++) await new Promise((res) => setTimeout(res, 10));
      }
      expect(results.length).toBe(30);
      for (const res of results) expect(res.label).toBe({ a: 'red', b: 'green', c: 'blue' }[res.cameraId]);
      // Frames offered together travel together.
      expect(Math.max(...r.sizes)).toBe(3);
      const window = aggregator.close();
      const a = window?.cameras.find((cam) => cam.cameraId === 'a');
      expect(a?.framesInferred).toBe(10);
      expect(a?.classCounts).toEqual({ red: 10 });
    } finally {
      await scheduler.stop();
      await r.stop();
    }
  });
});

describe('waiting for a batch to fill only when a frame is due', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  /** Two cameras at `intervalMs`, the second `offsetMs` behind the first, for `rounds` rounds; the batch may wait `maxBatchDelayMs`. */
  async function twoCameras(offsetMs: number, intervalMs: number, maxBatchDelayMs: number, rounds: number): Promise<{ sizes: number[]; results: FrameResult[] }> {
    const model = buildTinyModel({ batch: 'dynamic', kind: 'logits' });
    const path = join(dir.path, `m-${offsetMs}.onnx`);
    await writeFile(path, model.bytes);
    const r = new CountingRunner({ modelPath: path, metadata: model.metadata, intraOpThreads: 1, maxBatch: 2 });
    await r.start();
    const scheduler = new FrameScheduler(new WindowAggregator(['a', 'b']), createLogger('silent'), { maxBatchDelayMs });
    const results: FrameResult[] = [];
    scheduler.on('result', (res) => results.push(res));
    scheduler.setRunner(r);
    scheduler.start();
    const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
    try {
      for (let round = 0; round < rounds; round++) {
        const t = performance.now();
        scheduler.offer('a', solidFrame(255, 0, 0), performance.now());
        await sleep(offsetMs - (performance.now() - t));
        scheduler.offer('b', solidFrame(0, 0, 255), performance.now());
        await sleep(intervalMs - (performance.now() - t));
      }
      await sleep(100);
      return { sizes: r.sizes, results };
    } finally {
      await scheduler.stop();
      await r.stop();
    }
  }

  it('cameras in phase: one run carries both frames', async () => {
    const { sizes, results } = await twoCameras(5, 300, 200, 5);
    expect(results).toHaveLength(10);
    // From the third round on both cameras have a rhythm: the first frame waits the few ms for the second.
    expect(sizes.slice(-3)).toEqual([2, 2, 2]);
  });

  it('cameras out of phase: a frame runs at once instead of waiting out the delay for a frame not due', async () => {
    // Each camera's frame comes 400 ms after the other's, the batch may wait 300 ms: waiting would hold every frame 300 ms for nothing.
    const { sizes, results } = await twoCameras(400, 800, 300, 5);
    expect(results).toHaveLength(10);
    expect(sizes.slice(-4)).toEqual([1, 1, 1, 1]);
    // Once both have a rhythm, no frame waited out the delay.
    for (const res of results.slice(-4)) expect(res.finishedAt - res.arrivedAt).toBeLessThan(150);
  });
});
