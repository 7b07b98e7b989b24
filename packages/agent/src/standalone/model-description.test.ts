import { describe, expect, it } from 'vitest';
import { metadataFromFlags } from './model-description.js';
import type { ModelIo } from './model-io.js';

const tensor = (name: string, shape: (number | string)[]) => ({ name, type: 'float32', shape });
const nchw: ModelIo = { inputs: [tensor('images', [1, 3, 224, 160])], outputs: [tensor('logits', [1, 3])] };

describe('model metadata from flags', () => {
  it('fills names, layout and size from the model, with the documented defaults', () => {
    const r = metadataFromFlags({ labels: 'cat, dog ,empty' }, nchw);
    expect(r).toEqual({
      ok: true,
      metadata: {
        labels: ['cat', 'dog', 'empty'],
        input: { name: 'images', width: 160, height: 224, layout: 'NCHW', channelOrder: 'RGB', resize: 'stretch' },
        normalization: { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] },
        output: { name: 'logits', kind: 'probabilities' },
      },
    });
  });

  it('reads NHWC from the shape, and takes every flag as typed (fractions, one number for three channels)', () => {
    const io: ModelIo = { inputs: [tensor('x', ['batch', 96, 128, 3])], outputs: [tensor('p', ['batch', 2])] };
    const r = metadataFromFlags({ labels: 'on,off', channels: 'bgr', mean: '0.5', std: '0.25,0.5,1', scale: '2/255', outputKind: 'logits', resize: 'letterbox' }, io);
    expect(r.ok && r.metadata).toMatchObject({
      input: { width: 128, height: 96, layout: 'NHWC', channelOrder: 'BGR', resize: 'letterbox' },
      normalization: { scale: 2 / 255, mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1] },
      output: { kind: 'logits' },
    });
  });

  it('lists what it cannot work out, under the flag to give', () => {
    const io: ModelIo = { inputs: [tensor('a', [1, 3, 'h', 'w']), tensor('b', [1])], outputs: [tensor('p', [1, 2]), tensor('q', [1, 2])] };
    const r = metadataFromFlags({ labels: 'only-one', scale: 'lots', outputKind: 'scores' }, io);
    expect(r.ok ? [] : r.problems.map((p) => p.split(':')[0])).toEqual(['--input-name', '--output-name', '--size', '--scale', '--labels', '--output-kind']);
  });

  it('checks the result against the model as the registry does', () => {
    const r = metadataFromFlags({ labels: 'cat,dog' }, nchw);
    expect(r.ok ? '' : r.problems.join('\n')).toMatch(/^model does not match its metadata \(metadata\.labels\): output "logits" is float32 \[1, 3\], metadata has 2 labels$/);
  });
});
