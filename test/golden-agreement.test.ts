import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlPlane } from '@perch/control-plane';
import { modelMetadataSchema, modelTargetSchema, type ModelMetadataInput } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smokeTest } from '../packages/agent/src/deployment/golden-smoke-test.js';
import { InferenceRunner } from '../packages/agent/src/inference/inference-runner.js';
import { buildTinyModel, type TinyModel } from '../packages/agent/src/test-support/tiny-model.js';
import { bearer } from './support/api-auth.js';
import { startTestControlPlane } from './support/test-control-plane.js';

/**
 * The registry's golden output and the agent's own answer for the golden
 * frame agree: the control plane registers a model (onnxruntime in its
 * process, the shared preprocessing and softmax) and signs the result; the
 * agent's worker, given the same bytes, computes the same probabilities.
 * Variants cover what preprocessing must get right: channel order,
 * per-channel mean and std, logits vs probabilities, sizes.
 */
let dir: string;
let cp: ControlPlane;
let api: string;
let adminToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-golden-'));
  const site = await startTestControlPlane(dir);
  cp = site.cp;
  api = site.api;
  adminToken = site.adminToken;
});

afterAll(async () => {
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const variants: { name: string; model: TinyModel; metadata?: Partial<ModelMetadataInput> }[] = [
  { name: 'probs-rgb', model: buildTinyModel({ gain: 6 }) },
  { name: 'logits-wide', model: buildTinyModel({ kind: 'logits', width: 40, height: 24, gain: 9 }) },
  {
    name: 'bgr-normalised',
    model: buildTinyModel({ kind: 'logits', width: 16, height: 16, gain: 3 }),
    metadata: { input: { name: 'input', width: 16, height: 16, layout: 'NCHW', channelOrder: 'BGR' }, normalization: { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } },
  },
];

describe('golden input: registry and agent agree', () => {
  for (const v of variants) {
    it(`${v.name}: the signed golden output is what the agent's worker computes`, async () => {
      const metadata = modelMetadataSchema.parse({ ...v.model.metadata, ...v.metadata });
      const form = new FormData();
      form.set('version', '1.0.0');
      form.set('metadata', JSON.stringify(metadata));
      form.set('file', new Blob([v.model.bytes]), 'model.onnx');
      const res = await fetch(`${api}/models/${v.name}/versions`, { method: 'POST', body: form, headers: bearer(adminToken) });
      expect(res.status, await res.clone().text()).toBe(201);
      const target = modelTargetSchema.parse(((await res.json()) as { target: unknown }).target);
      const golden = target.custom.golden;
      expect(golden).toMatchObject({ frame: { pattern: 'seeded-rgb24.v1' }, tolerance: 1e-3 });
      expect(golden?.probabilities).toHaveLength(metadata.labels.length);
      expect(golden?.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);

      const modelPath = join(dir, `${v.name}.onnx`);
      writeFileSync(modelPath, v.model.bytes);
      const runner = new InferenceRunner({ modelPath, metadata, intraOpThreads: 1 });
      await runner.start();
      try {
        const r = await smokeTest(runner, target);
        expect(r).toMatchObject({ outcome: 'passed' });
        if (r.outcome === 'passed') expect(r.maxDiff).toBeLessThan(1e-5);
      } finally {
        await runner.stop();
      }
    });
  }

  it('the same file registered twice gets the same golden frame: the seed comes from its bytes', async () => {
    const model = buildTinyModel({ gain: 2 });
    const seeds: number[] = [];
    for (const version of ['1.0.0', '1.0.1']) {
      const form = new FormData();
      form.set('version', version);
      form.set('metadata', JSON.stringify(model.metadata));
      form.set('file', new Blob([model.bytes]), 'model.onnx');
      const res = await fetch(`${api}/models/twice/versions`, { method: 'POST', body: form, headers: bearer(adminToken) });
      expect(res.status).toBe(201);
      seeds.push(modelTargetSchema.parse(((await res.json()) as { target: unknown }).target).custom.golden?.frame.seed ?? -1);
    }
    expect(seeds[0]).toBeGreaterThanOrEqual(0);
    expect(seeds[1]).toBe(seeds[0]);
  });
});
