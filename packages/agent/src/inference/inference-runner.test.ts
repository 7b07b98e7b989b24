import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../test-support/harness.js';
import { buildTinyModel, solidFrame } from '../test-support/tiny-model.js';
import { InferenceRunner, ModelLoadError } from './inference-runner.js';
import { top1 } from './postprocess.js';

/** An 8x8 rgb24 frame of one colour. */

describe('inference runner (onnxruntime in a worker thread)', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  async function modelFile(name: string, bytes: Uint8Array): Promise<string> {
    const path = join(dir.path, name);
    await writeFile(path, bytes);
    return path;
  }

  it('classifies frames with a real model, leaving the caller\'s frame as it was', async () => {
    const model = buildTinyModel({ kind: 'probabilities' });
    const runner = new InferenceRunner({ modelPath: await modelFile('p.onnx', model.bytes), metadata: model.metadata, intraOpThreads: 1 });
    await runner.start();
    try {
      const red = solidFrame(255, 0, 0);
      const r = await runner.run(red);
      // Preprocessed on this thread: the frame is neither moved nor changed, and comes back as the same array.
      expect(r.frame).toBe(red);
      expect(Array.from(red.subarray(0, 3))).toEqual([255, 0, 0]);
      expect(model.metadata.labels[top1(r.probabilities).index]).toBe('red');
      // By hand: logits [4, 0, 0] -> softmax e^4 / (e^4 + 2).
      expect(r.probabilities[0]).toBeCloseTo(Math.exp(4) / (Math.exp(4) + 2), 5);
      expect(r.inferenceMs).toBeGreaterThanOrEqual(0);
      const blue = await runner.run(solidFrame(0, 0, 255));
      expect(top1(blue.probabilities).index).toBe(2);
      // A view into a larger buffer works as a frame.
      const big = new Uint8Array(8 * 8 * 3 * 2);
      big.fill(255, 8 * 8 * 3);
      for (let i = 2; i < 8 * 8 * 3; i += 3) big[i] = 255;
      const view = big.subarray(0, 8 * 8 * 3);
      expect(top1((await runner.run(view)).probabilities).index).toBe(2);
      expect(big.byteLength).toBe(384);
      // A frame of the wrong size is refused before it reaches the worker, and the runner goes on.
      await expect(runner.run(new Uint8Array(10))).rejects.toThrow(/frame has 10 bytes/);
      expect(top1((await runner.run(solidFrame(255, 0, 0))).probabilities).index).toBe(0);
    } finally {
      await runner.stop();
    }
  });

  it('applies a softmax to a logits model', async () => {
    const model = buildTinyModel({ kind: 'logits', gain: 2 });
    const runner = new InferenceRunner({ modelPath: await modelFile('l.onnx', model.bytes), metadata: model.metadata, intraOpThreads: 1 });
    await runner.start();
    try {
      const r = await runner.run(solidFrame(0, 255, 0));
      const sum = r.probabilities.reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 5);
      expect(r.probabilities[1]).toBeCloseTo(Math.exp(2) / (Math.exp(2) + 2), 5);
    } finally {
      await runner.stop();
    }
  });

  it('fails to start, with a clear reason, on a broken file or metadata that does not fit', async () => {
    const model = buildTinyModel();
    const garbage = new InferenceRunner({ modelPath: await modelFile('bad.onnx', Buffer.from('not an onnx model')), metadata: model.metadata, intraOpThreads: 1 });
    await expect(garbage.start()).rejects.toThrow(ModelLoadError);
    const wrongInput = new InferenceRunner({
      modelPath: await modelFile('ok.onnx', model.bytes),
      metadata: { ...model.metadata, input: { ...model.metadata.input, name: 'pixels' } },
      intraOpThreads: 1,
    });
    await expect(wrongInput.start()).rejects.toThrow(/model has no input "pixels"/);
    const wrongSize = new InferenceRunner({
      modelPath: await modelFile('ok2.onnx', model.bytes),
      metadata: { ...model.metadata, input: { ...model.metadata.input, width: 16 } },
      intraOpThreads: 1,
    });
    // Caught from the model's declared shape, before any frame runs.
    await expect(wrongSize.start()).rejects.toThrow(/shape \[1, 3, 8, 8\], metadata says NCHW \[N, 3, 8, 16\]/);
    const wrongLabels = new InferenceRunner({
      modelPath: await modelFile('ok3.onnx', model.bytes),
      metadata: { ...model.metadata, labels: ['a', 'b'] },
      intraOpThreads: 1,
    });
    await expect(wrongLabels.start()).rejects.toThrow(/\[1, 3\], metadata has 2 labels/);
  });

  it('stops cleanly with runs under way in the worker, again and again (as model swaps do)', async () => {
    // Big enough that a batch keeps session.run busy for milliseconds: stop() lands inside it.
    const model = buildTinyModel({ width: 512, height: 512, batch: 'dynamic' });
    const path = await modelFile('big.onnx', model.bytes);
    const frame = new Uint8Array(512 * 512 * 3).fill(90);
    for (let i = 0; i < 8; i++) {
      const runner = new InferenceRunner({ modelPath: path, metadata: model.metadata, intraOpThreads: 1, maxBatch: 4 });
      await runner.start();
      const runs = Promise.allSettled([runner.runBatch([frame, frame, frame, frame]), runner.runBatch([frame, frame, frame, frame])]);
      await new Promise((res) => setTimeout(res, i % 4));
      await runner.stop();
      // Runs not answered before stop() are rejected, never left hanging; this process is still alive to see it.
      for (const r of await runs) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/stopped/);
    }
  });

  it('rejects runs after stop', async () => {
    const model = buildTinyModel();
    const runner = new InferenceRunner({ modelPath: await modelFile('s.onnx', model.bytes), metadata: model.metadata, intraOpThreads: 1 });
    await runner.start();
    await runner.stop();
    await expect(runner.run(solidFrame(1, 2, 3))).rejects.toThrow(/not running/);
  });
});
