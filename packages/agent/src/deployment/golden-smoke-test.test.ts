import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelGolden } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceRunner } from '../inference/inference-runner.js';
import { goldenOf } from '../test-support/golden.js';
import { tempDir } from '../test-support/harness.js';
import { buildTinyModel, tinyModelTarget, type TinyModel } from '../test-support/tiny-model.js';
import { smokeTest } from './golden-smoke-test.js';

/** The golden input run in a real worker on real onnxruntime sessions, against outputs computed apart from it. */
describe('golden input smoke test', () => {
  let dir: { path: string; remove(): Promise<void> };
  const runners: InferenceRunner[] = [];
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await Promise.all(runners.map((r) => r.stop()));
    await dir.remove();
  });

  async function runnerFor(model: TinyModel, name: string): Promise<InferenceRunner> {
    const modelPath = join(dir.path, `${name}.onnx`);
    await writeFile(modelPath, model.bytes);
    const runner = new InferenceRunner({ modelPath, metadata: model.metadata, intraOpThreads: 1 });
    await runner.start();
    runners.push(runner);
    return runner;
  }

  const withGolden = (model: TinyModel, golden: ModelGolden | undefined) => {
    const target = tinyModelTarget(model, '1');
    return { ...target, custom: { ...target.custom, ...(golden ? { golden } : {}) } };
  };

  it('passes a model that gives the expected probabilities, after its softmax for logits', async () => {
    for (const kind of ['probabilities', 'logits'] as const) {
      const model = buildTinyModel({ kind, width: 16, height: 12, gain: 6 });
      const r = await smokeTest(await runnerFor(model, `ok-${kind}`), withGolden(model, await goldenOf(model.bytes, model.metadata, 99)));
      expect(r).toMatchObject({ outcome: 'passed' });
      if (r.outcome === 'passed') {
        expect(r.maxDiff).toBeLessThan(1e-6);
        expect(r.runMs).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('refuses a model whose answer differs from the signed one, giving the max difference', async () => {
    const shipped = buildTinyModel({ gain: 4 });
    // What the registry measured came from another build of the model (a conversion gone wrong, say).
    const measured = buildTinyModel({ gain: 40 });
    const r = await smokeTest(await runnerFor(shipped, 'drifted'), withGolden(shipped, await goldenOf(measured.bytes, measured.metadata, 5)));
    expect(r.outcome).toBe('failed');
    if (r.outcome === 'failed') expect(r.reason).toMatch(/^golden input: max difference 0\.\d+ \(class \d: expected .*, got .*\) exceeds the tolerance 0\.001$/);
  });

  it('refuses an expectation for another frame: the seed is part of what is signed', async () => {
    const model = buildTinyModel({ gain: 20 });
    const golden = await goldenOf(model.bytes, model.metadata, 5);
    const r = await smokeTest(await runnerFor(model, 'seed'), withGolden(model, { ...golden, frame: { ...golden.frame, seed: 6 } }));
    expect(r.outcome).toBe('failed');
  });

  it('a target without a golden input still runs the frame, for the latency baseline', async () => {
    const model = buildTinyModel();
    const r = await smokeTest(await runnerFor(model, 'old'), withGolden(model, undefined));
    expect(r).toMatchObject({ outcome: 'no-golden' });
  });
});
