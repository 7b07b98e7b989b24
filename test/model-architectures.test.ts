import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceRunner } from '@perch/agent';
import { encodeModel, flatten, floatValueInfo, gemm, globalAveragePool, GraphBuilder, intsAttr } from '@perch/control-plane';
import { modelMetadataSchema, type ModelMetadata, type ModelMetadataInput } from '@perch/shared';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { torchvisionModel } from './support/torchvision-models.js';

/**
 * Any ONNX image classifier with input [N,3,H,W] or [N,H,W,3] float32 runs in
 * the agent: models the project builds in other layouts and channel orders,
 * and models exported by PyTorch that nobody in the project designed. Each is
 * checked against bare onnxruntime fed by a reference preprocessing written
 * here, independently of the agent's.
 */
const dir = mkdtempSync(join(tmpdir(), 'perch-arch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Seeded rgb24 frame. */
function frame(width: number, height: number, seed: number): Uint8Array {
  const f = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let i = 0; i < f.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[i] = s >>> 24;
  }
  return f;
}

/** The metadata's formula, written out the slow, obvious way. */
function reference(rgb: Uint8Array, meta: ModelMetadata): Float32Array {
  const { width: w, height: h, layout, channelOrder } = meta.input;
  const { scale, mean, std } = meta.normalization;
  const out = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const src = channelOrder === 'RGB' ? c : 2 - c;
        const v = ((rgb[(y * w + x) * 3 + src] as number) * scale - (mean[c] as number)) / (std[c] as number);
        out[layout === 'NCHW' ? c * w * h + y * w + x : (y * w + x) * 3 + c] = v;
      }
    }
  }
  return out;
}

function softmax(v: Float32Array): number[] {
  const m = Math.max(...v);
  const e = Array.from(v, (x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

async function bare(modelPath: string, meta: ModelMetadata, rgb: Uint8Array): Promise<number[]> {
  const session = await InferenceSession.create(modelPath);
  try {
    const { width: w, height: h, layout } = meta.input;
    const dims = layout === 'NCHW' ? [1, 3, h, w] : [1, h, w, 3];
    const out = await session.run({ [meta.input.name]: new Tensor('float32', reference(rgb, meta), dims) });
    const data = out[meta.output.name]?.data as Float32Array;
    return meta.output.kind === 'logits' ? softmax(data) : Array.from(data);
  } finally {
    await session.release();
  }
}

async function agentRun(modelPath: string, meta: ModelMetadata, frames: Uint8Array[], maxBatch = 1): Promise<number[][]> {
  const runner = new InferenceRunner({ modelPath, metadata: meta, intraOpThreads: 1, maxBatch });
  await runner.start();
  try {
    const { results } = await runner.runBatch(frames.map((f) => f.slice()));
    return results.map((r) => Array.from(r.probabilities));
  } finally {
    await runner.stop();
  }
}

function expectClose(a: number[], b: number[], tolerance: number): void {
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => expect(Math.abs(v - (b[i] as number))).toBeLessThan(tolerance));
}

describe('model architectures', () => {
  it('runs a project-built NHWC model with BGR channel order', async () => {
    // input [N, H, W, 3] -> NCHW -> mean per channel -> identity Gemm x8: logit c is channel c's mean.
    const size = 16;
    const g = new GraphBuilder('nhwc-bgr');
    const x = g.addInput(floatValueInfo('pixels', ['N', size, size, 3]));
    const nchw = g.node('Transpose', [x], [intsAttr('perm', [0, 3, 1, 2])]);
    const pooled = flatten(g, globalAveragePool(g, nchw));
    const eye = new Float32Array([8, 0, 0, 0, 8, 0, 0, 0, 8]);
    g.node('Identity', [gemm(g, pooled, { weights: eye, bias: new Float32Array(3), inFeatures: 3, outFeatures: 3, name: 'head' })], [], 'scores');
    g.addOutput(floatValueInfo('scores', ['N', 3]));
    const path = join(dir, 'nhwc-bgr.onnx');
    writeFileSync(path, encodeModel(g, { producerName: 'perch-tests', producerVersion: '1' }));
    const input: ModelMetadataInput = {
      labels: ['blue', 'green', 'red'],
      input: { name: 'pixels', width: size, height: size, layout: 'NHWC', channelOrder: 'BGR' },
      normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
      output: { name: 'scores', kind: 'logits' },
    };
    const meta = modelMetadataSchema.parse(input);
    const red = new Uint8Array(size * size * 3);
    for (let i = 0; i < red.length; i += 3) red[i] = 250;
    const [probs] = await agentRun(path, meta, [red]);
    expect(probs && probs.indexOf(Math.max(...probs))).toBe(2); // 'red'
    const noise = frame(size, size, 3);
    const [agent] = await agentRun(path, meta, [noise]);
    expectClose(agent ?? [], await bare(path, meta, noise), 1e-5);
  });

  for (const [name, size] of [['mobilenet_v2', 224], ['resnet18', 224]] as const) {
    it(`runs ${name} exported by PyTorch, alone and batched`, async () => {
      const path = await torchvisionModel(name, size, 3);
      const meta = modelMetadataSchema.parse({
        labels: ['empty', 'cat', 'dog'],
        input: { name: 'input', width: size, height: size, layout: 'NCHW', channelOrder: 'RGB' },
        normalization: { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
        output: { name: 'logits', kind: 'logits' },
      } satisfies ModelMetadataInput);
      const frames = [frame(size, size, 1), frame(size, size, 2)];
      const single = await agentRun(path, meta, [frames[0] as Uint8Array]);
      const batched = await agentRun(path, meta, frames, 2);
      const want = await bare(path, meta, frames[0] as Uint8Array);
      expectClose(single[0] ?? [], want, 1e-4);
      expectClose(batched[0] ?? [], want, 1e-4);
      expectClose(batched[1] ?? [], await bare(path, meta, frames[1] as Uint8Array), 1e-4);
    }, 180_000);
  }
});
