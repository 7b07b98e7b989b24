import type { ModelMetadata } from './model-metadata.js';

/**
 * Whether an ONNX model's declared input and output fit the metadata that
 * describes it. Plain data in, so the registry (before signing) and the
 * agent (before activating) apply the same rule to what onnxruntime reports.
 */
export interface ModelTensorInfo {
  name: string;
  /** 'float32', …; undefined for a non-tensor value */
  type: string | undefined;
  /** numbers for fixed dimensions, strings (or -1) for dynamic ones */
  shape: readonly (number | string)[];
}

export type ModelIoCheck = { ok: true; batch: 'dynamic' | number } | { ok: false; error: string; field: string };

const dynamic = (d: number | string | undefined): boolean => typeof d === 'string' || d === -1;
const fits = (d: number | string | undefined, want: number): boolean => dynamic(d) || d === want;
const show = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;

export function checkModelIo(inputs: readonly ModelTensorInfo[], outputs: readonly ModelTensorInfo[], meta: ModelMetadata): ModelIoCheck {
  const input = inputs.find((i) => i.name === meta.input.name);
  if (!input) {
    return { ok: false, field: 'metadata.input.name', error: `model has no input "${meta.input.name}" (inputs: ${inputs.map((i) => i.name).join(', ')})` };
  }
  if (input.type !== 'float32' || input.shape.length !== 4) {
    return { ok: false, field: 'metadata.input', error: `input "${input.name}" must be a float32 tensor of rank 4, is ${input.type ?? 'not a tensor'} ${show(input.shape)}` };
  }
  const { width, height, layout } = meta.input;
  const [n, d1, d2, d3] = input.shape;
  const ok = layout === 'NCHW' ? fits(d1, 3) && fits(d2, height) && fits(d3, width) : fits(d1, height) && fits(d2, width) && fits(d3, 3);
  if (!ok) {
    const want = layout === 'NCHW' ? `[N, 3, ${height}, ${width}]` : `[N, ${height}, ${width}, 3]`;
    return { ok: false, field: 'metadata.input', error: `input "${input.name}" has shape ${show(input.shape)}, metadata says ${layout} ${want}` };
  }
  const output = outputs.find((o) => o.name === meta.output.name);
  if (!output) {
    return { ok: false, field: 'metadata.output.name', error: `model has no output "${meta.output.name}" (outputs: ${outputs.map((o) => o.name).join(', ')})` };
  }
  const classes = output.shape.at(-1);
  if (output.type !== 'float32' || (typeof classes === 'number' && classes !== -1 && classes !== meta.labels.length)) {
    return {
      ok: false,
      field: 'metadata.labels',
      error: `output "${output.name}" is ${output.type ?? 'not a tensor'} ${show(output.shape)}, metadata has ${meta.labels.length} labels`,
    };
  }
  return { ok: true, batch: typeof n === 'number' && n !== -1 ? n : 'dynamic' };
}
