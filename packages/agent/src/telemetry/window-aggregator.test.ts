import { binIndex, HISTOGRAM_SPECS, histogramCount, LATENCY_SPEC, telemetryWindowSchema } from '@perch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../test-support/harness.js';
import { SequenceStore } from './sequence-store.js';
import { summarizeCamera, WindowAggregator } from './window-aggregator.js';

const model = { name: 'tiny', version: '1', sha256: 'a'.repeat(64) };

describe('window aggregator', () => {
  it('counts frames, classes and histograms per camera, and closes windows back to back', () => {
    const agg = new WindowAggregator(['front', 'back'], 1000);
    expect(agg.switchModel(model, 1000)).toBeNull();
    for (let i = 0; i < 5; i++) agg.received('front');
    agg.dropped('front');
    agg.inferred('front', 'cat', 0.97, 4);
    agg.inferred('front', 'cat', 0.51, 12);
    agg.inferred('front', 'dog', 1.0000001, 0.5);
    agg.inferenceError('front');
    const w = agg.close(11_000);
    expect(w).not.toBeNull();
    if (!w) return;
    expect(w).toMatchObject({ windowStart: 1000, windowEnd: 11_000, model });
    const front = w.cameras.find((c) => c.cameraId === 'front');
    expect(front).toMatchObject({ framesReceived: 5, framesDropped: 1, framesInferred: 3, inferenceErrors: 1, classCounts: { cat: 2, dog: 1 } });
    expect(front && histogramCount(front.confidence)).toBe(3);
    // 0.97 -> bin [0.95, 1), 0.51 -> [0.5, 0.55), 1.0 (clamped) -> the last bin [0.95, inf).
    expect(front?.confidence.counts[19]).toBe(2);
    expect(front?.confidence.counts[10]).toBe(1);
    // 0.5 ms -> [0.5, 0.75), 4 ms -> [4, 5), 12 ms -> [12, 13): one frame each, nothing elsewhere.
    const bins = [0.5, 4, 12].map((ms) => binIndex(LATENCY_SPEC, ms));
    expect(bins.map((b) => HISTOGRAM_SPECS[LATENCY_SPEC].edges[b - 1])).toEqual([0.5, 4, 12]);
    expect(front?.latencyMs.counts.flatMap((c, i) => (c > 0 ? [[i, c]] : []))).toEqual(bins.map((b) => [b, 1]));
    expect(w.cameras.find((c) => c.cameraId === 'back')?.framesReceived).toBe(0);
    expect(telemetryWindowSchema.safeParse({ deviceId: 'd1', seq: 0, ...w }).success).toBe(true);
    const next = agg.close(21_000);
    expect(next?.windowStart).toBe(11_000);
    expect(next?.cameras.every((c) => c.framesReceived === 0)).toBe(true);
  });

  it('a model switch closes the window; windows without a model are not sent', () => {
    const agg = new WindowAggregator(['front'], 0);
    expect(agg.close(10)).toBeNull();
    agg.switchModel(model, 20);
    agg.inferred('front', 'cat', 0.9, 3);
    const closed = agg.switchModel(null, 30);
    expect(closed?.model).toEqual(model);
    expect(closed?.windowStart).toBe(20);
    expect(agg.close(40)).toBeNull();
  });

  it('summarises a camera in one line', () => {
    const agg = new WindowAggregator(['front'], 0);
    agg.switchModel(model, 0);
    for (let i = 0; i < 3; i++) agg.inferred('front', 'cat', 0.9, 8);
    agg.inferred('front', 'dog', 0.9, 8);
    agg.dropped('front');
    const w = agg.close(10);
    const line = w?.cameras[0] ? summarizeCamera(w.cameras[0]) : '';
    expect(line).toMatch(/^camera front: 4 inferred, cat 3, dog 1, 1 dropped, p95 latency \d+ ms$/);
  });
});

describe('sequence store', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(() => dir.remove());

  it('hands out consecutive numbers that survive a restart', async () => {
    const a = new SequenceStore(dir.path);
    await a.load();
    expect(await Promise.all([a.allocate(), a.allocate(), a.allocate()])).toEqual([0, 1, 2]);
    const b = new SequenceStore(dir.path);
    await b.load();
    expect(await b.allocate()).toBe(3);
  });
});
