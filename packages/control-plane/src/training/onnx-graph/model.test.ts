import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './graph-builder.js';
import { encodeModel, IR_VERSION, OPSET_VERSION } from './model.js';
import { onnx } from './onnx-proto.js';
import { averagePool, concat, conv, flatten, gemm, globalAveragePool, globalMaxPool, maxPool, relu, softmax } from './ops.js';
import { floatValueInfo } from './value-info.js';

/**
 * input [N,1,4,4] -> conv 2x2 (one filter: +1 left column, -1 right column), no pad -> relu [N,1,3,3]
 *   -> maxpool 3 -> [N,1,1,1]; globalAveragePool / globalMaxPool of the input -> [N,1,1,1]
 *   -> concat -> flatten [N,3] -> gemm to 2 classes -> softmax
 */
function tinyModel(): Uint8Array {
  const g = new GraphBuilder('tiny');
  g.addInput(floatValueInfo('input', ['N', 1, 4, 4]));
  const edges = relu(g, conv(g, 'input', { weights: Float32Array.of(1, -1, 1, -1), bias: Float32Array.of(0), outChannels: 1, inChannels: 1, kernel: 2, pad: 0, name: 'c' }));
  const pooled = [maxPool(g, edges, 3), globalAveragePool(g, 'input'), globalMaxPool(g, 'input')];
  const features = flatten(g, concat(g, pooled, 1));
  const logits = gemm(g, features, { weights: Float32Array.of(1, 0, 0, 0, 1, 1), bias: Float32Array.of(0.5, -0.5), inFeatures: 3, outFeatures: 2, name: 'head' });
  softmax(g, logits, 1, 'probabilities');
  g.addOutput(floatValueInfo('probabilities', ['N', 2]));
  return encodeModel(g, { producerName: 'test', producerVersion: '0', metadata: { purpose: 'unit test' } });
}

/** Same computation in plain TypeScript. */
function expected(image: number[]): [number, number] {
  const at = (y: number, x: number) => image[y * 4 + x] ?? 0;
  let edgeMax = 0;
  for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) edgeMax = Math.max(edgeMax, at(y, x) + at(y + 1, x) - at(y, x + 1) - at(y + 1, x + 1));
  const mean = image.reduce((a, b) => a + b, 0) / 16;
  const max = Math.max(...image);
  const l0 = edgeMax + 0.5;
  const l1 = mean + max - 0.5;
  const e0 = Math.exp(l0 - Math.max(l0, l1));
  const e1 = Math.exp(l1 - Math.max(l0, l1));
  return [e0 / (e0 + e1), e1 / (e0 + e1)];
}

describe('onnx-graph', () => {
  it('writes a model onnxruntime loads and computes as specified, at any batch size', async () => {
    const bytes = tinyModel();
    const decoded = onnx.ModelProto.decode(bytes);
    expect(Number(decoded.irVersion)).toBe(IR_VERSION);
    expect(Number(decoded.opsetImport[0]?.version)).toBe(OPSET_VERSION);
    expect(decoded.graph?.input?.[0]?.type?.tensorType?.shape?.dim?.[0]?.dimParam).toBe('N');
    expect(decoded.graph?.initializer?.every((t) => (t.rawData?.length ?? 0) > 0)).toBe(true);
    expect(decoded.metadataProps.find((p) => p.key === 'purpose')?.value).toBe('unit test');

    const session = await ort.InferenceSession.create(bytes);
    const images = [
      [5, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3],
      Array.from({ length: 16 }, (_, i) => (i % 5) - 2),
    ];
    for (const batch of [images.slice(0, 1), images]) {
      const input = new ort.Tensor('float32', Float32Array.from(batch.flat()), [batch.length, 1, 4, 4]);
      const out = (await session.run({ input })).probabilities;
      expect(out?.dims).toEqual([batch.length, 2]);
      const data = out?.data as Float32Array;
      batch.forEach((image, n) => {
        const [p0, p1] = expected(image);
        expect(data[n * 2]).toBeCloseTo(p0, 5);
        expect(data[n * 2 + 1]).toBeCloseTo(p1, 5);
      });
    }
    await session.release();
  });

  it('rejects graphs that reference undefined values or reuse names', () => {
    const g = new GraphBuilder('bad');
    g.addInput(floatValueInfo('input', ['N', 1, 4, 4]));
    expect(() => relu(g, 'missing')).toThrow(/not defined/);
    relu(g, 'input');
    expect(() => g.node('Relu', ['input'], [], 'input')).toThrow(/already used/);
    expect(() => averagePool(g, 'nope', 2)).toThrow(/not defined/);
    expect(() => conv(g, 'input', { weights: new Float32Array(3), outChannels: 1, inChannels: 1, kernel: 2, name: 'w' })).toThrow(/need 4 values/);
    expect(() => g.addOutput(floatValueInfo('never', ['N', 1]))).toThrow(/not produced/);
  });
});
