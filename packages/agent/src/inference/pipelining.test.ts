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


/** A real runner that records the most runs it ever had handed over at once. */
class DepthRunner extends InferenceRunner {
  maxInFlight = 0;
  readonly sizes: number[] = [];
  override runBatch(frames: Uint8Array[]): Promise<BatchResult> {
    this.sizes.push(frames.length);
    const run = super.runBatch(frames);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return run;
  }
}

describe('handing the next run to the worker before the current one ends', () => {
  let dir: { path: string; remove(): Promise<void> };
  let modelPath: string;
  const model = buildTinyModel({ kind: 'logits', batch: 'dynamic' });
  beforeAll(async () => {
    dir = await tempDir();
    modelPath = join(dir.path, 'm.onnx');
    await writeFile(modelPath, model.bytes);
  });
  afterAll(() => dir.remove());

  /** Saturates the scheduler from its cameras (each offers again the moment its frame is taken) until `frames` results came back. */
  async function saturate(
    pipelineDepth: number | undefined,
    frames: number,
    source: Record<string, Uint8Array> = { red: solidFrame(255, 0, 0), blue: solidFrame(0, 0, 255) },
    maxBatch = 1,
  ): Promise<{ runner: DepthRunner; results: FrameResult[]; aggregator: WindowAggregator; lateResults: number }> {
    const runner = new DepthRunner({ modelPath, metadata: model.metadata, intraOpThreads: 1, maxBatch });
    await runner.start();
    const aggregator = new WindowAggregator(Object.keys(source));
    const scheduler = new FrameScheduler(aggregator, createLogger('silent'), { maxBatchDelayMs: 0, pipelineDepth });
    const results: FrameResult[] = [];
    let stopped = false;
    let lateResults = 0;
    scheduler.on('result', (r) => (stopped ? lateResults++ : results.push(r)));
    scheduler.on('dispatched', (ids) => {
      for (const id of ids) scheduler.offer(id, source[id] as Uint8Array, performance.now());
    });
    scheduler.setRunner(runner);
    scheduler.start();
    for (const [id, f] of Object.entries(source)) scheduler.offer(id, f, performance.now());
    try {
      for (let i = 0; i < 500 && results.length < frames; i++) await new Promise((res) => setTimeout(res, 10));
    } finally {
      await scheduler.stop();
      stopped = true;
      await runner.stop();
    }
    return { runner, results, aggregator, lateResults };
  }

  it('keeps two runs in the worker at saturation, with every result right and attributed to its camera', async () => {
    const { runner, results, aggregator, lateResults } = await saturate(undefined, 200);
    expect(results.length).toBeGreaterThanOrEqual(200);
    expect(runner.maxInFlight).toBe(2);
    for (const r of results) expect(r.label).toBe(r.cameraId);
    // Round-robin: neither camera starves.
    const red = results.filter((r) => r.cameraId === 'red').length;
    expect(Math.abs(red - (results.length - red))).toBeLessThanOrEqual(2);
    // Frame age when the worker began each run is recorded for every inferred frame.
    const window = aggregator.close();
    for (const cam of window?.cameras ?? []) {
      const ages = cam.frameAgeMs?.inference;
      expect(ages?.counts.reduce((a, b) => a + b, 0)).toBe(cam.framesInferred);
    }
    expect(lateResults).toBe(0);
  });

  it('hands over one run at a time when told to', async () => {
    const { runner, results } = await saturate(1, 100);
    expect(results.length).toBeGreaterThanOrEqual(100);
    expect(runner.maxInFlight).toBe(1);
    for (const r of results) expect(r.label).toBe(r.cameraId);
  });

  it('takes every waiting camera into a batch, round-robin', async () => {
    const source = { red: solidFrame(255, 0, 0), green: solidFrame(0, 255, 0), blue: solidFrame(0, 0, 255), red2: solidFrame(250, 5, 5) };
    const { runner, results } = await saturate(undefined, 200, source, 4);
    expect(results.length).toBeGreaterThanOrEqual(200);
    // Every camera always has a frame waiting, so every run carries all four.
    expect(runner.sizes.every((n) => n === 4)).toBe(true);
    for (const r of results) expect(r.label).toBe(r.cameraId === 'red2' ? 'red' : r.cameraId);
  });
});
