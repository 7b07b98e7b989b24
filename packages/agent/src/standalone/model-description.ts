import { readFile } from 'node:fs/promises';
import { checkModelIo, modelMetadataSchema, type ModelMetadata } from '@perch/shared';
import type { z } from 'zod';
import type { ModelIo } from './model-io.js';

/** The metadata flags of `perch-agent run`, as typed (strings), before any checking. */
export interface MetadataFlags {
  labels?: string;
  size?: string;
  layout?: string;
  channels?: string;
  resize?: string;
  mean?: string;
  std?: string;
  scale?: string;
  inputName?: string;
  outputName?: string;
  outputKind?: string;
}

const FLAG_OF_PATH: [prefix: string, flag: string][] = [
  ['labels', '--labels'],
  ['input.name', '--input-name'],
  ['input.width', '--size'],
  ['input.height', '--size'],
  ['input.layout', '--layout'],
  ['input.channelOrder', '--channels'],
  ['input.resize', '--resize'],
  ['normalization.scale', '--scale'],
  ['normalization.mean', '--mean'],
  ['normalization.std', '--std'],
  ['output.name', '--output-name'],
  ['output.kind', '--output-kind'],
];

export type Described = { ok: true; metadata: ModelMetadata } | { ok: false; problems: string[] };

/** A number as typed: decimal, exponent, or a fraction such as 1/255. */
function parseNumber(text: string): number | null {
  const t = text.trim();
  const frac = /^([-+]?\d*\.?\d+(?:e[-+]?\d+)?)\/(\d*\.?\d+(?:e[-+]?\d+)?)$/i.exec(t);
  const n = frac ? Number(frac[1]) / Number(frac[2]) : /^[-+]?\d*\.?\d+(?:e[-+]?\d+)?$/i.test(t) ? Number(t) : NaN;
  return Number.isFinite(n) ? n : null;
}

/** One number for all three channels, or three comma-separated. */
function parseTriple(text: string, flag: string, problems: string[]): [number, number, number] | undefined {
  const parts = text.split(',').map(parseNumber);
  if (parts.some((p) => p === null) || (parts.length !== 1 && parts.length !== 3)) {
    problems.push(`${flag}: expected one number or three comma-separated numbers (e.g. 0.485,0.456,0.406), got ${JSON.stringify(text)}`);
    return undefined;
  }
  const [a, b = a, c = a] = parts as number[];
  return [a as number, b as number, c as number];
}

const show = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;

function zodProblems(error: z.ZodError, flags: boolean): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    const flag = flags ? FLAG_OF_PATH.find(([prefix]) => path === prefix || path.startsWith(`${prefix}.`))?.[1] : undefined;
    return `${flag ?? (path === '' ? '(root)' : path)}: ${issue.message}`;
  });
}

/**
 * The model's metadata from flags, with what the installer left out taken
 * from the model itself where it can be: the input and output names when
 * there is only one of each, the layout and size when its input shape fixes
 * them. Every problem is listed, each under the flag to fix.
 */
export function metadataFromFlags(flags: MetadataFlags, io: ModelIo): Described {
  const problems: string[] = [];
  const labels = flags.labels?.split(',').map((l) => l.trim());
  if (labels === undefined) problems.push('--labels: required without --metadata (the class names, comma-separated, in the order of the model\'s outputs)');

  let inputName = flags.inputName;
  if (inputName === undefined) {
    if (io.inputs.length === 1) inputName = io.inputs[0]?.name;
    else problems.push(`--input-name: the model has ${io.inputs.length} inputs (${io.inputs.map((i) => i.name).join(', ')}); name one`);
  }
  let outputName = flags.outputName;
  if (outputName === undefined) {
    if (io.outputs.length === 1) outputName = io.outputs[0]?.name;
    else problems.push(`--output-name: the model has ${io.outputs.length} outputs (${io.outputs.map((o) => o.name).join(', ')}); name one`);
  }

  const shape = io.inputs.find((i) => i.name === inputName)?.shape ?? [];
  const dim = (i: number) => {
    const d = shape[i];
    return typeof d === 'number' && d > 0 ? d : undefined;
  };
  const layout = flags.layout?.toUpperCase() ?? (dim(3) === 3 && dim(1) !== 3 ? 'NHWC' : 'NCHW');
  let width: number | undefined;
  let height: number | undefined;
  if (flags.size !== undefined) {
    const m = /^(\d+)x(\d+)$/i.exec(flags.size.trim());
    if (m) [width, height] = [Number(m[1]), Number(m[2])];
    else problems.push(`--size: expected WIDTHxHEIGHT (e.g. 224x224), got ${JSON.stringify(flags.size)}`);
  } else {
    [height, width] = layout === 'NHWC' ? [dim(1), dim(2)] : [dim(2), dim(3)];
    if (width === undefined || height === undefined) {
      problems.push(`--size: the model's input ${JSON.stringify(inputName ?? '?')} has shape ${show(shape)}, no fixed size; give --size WIDTHxHEIGHT`);
    }
  }

  const mean = flags.mean !== undefined ? parseTriple(flags.mean, '--mean', problems) : [0, 0, 0];
  const std = flags.std !== undefined ? parseTriple(flags.std, '--std', problems) : [1, 1, 1];
  let scale: number | null = 1 / 255;
  if (flags.scale !== undefined) {
    scale = parseNumber(flags.scale);
    if (scale === null) problems.push(`--scale: expected a number (e.g. 0.00392 or 1/255), got ${JSON.stringify(flags.scale)}`);
  }

  const parsed = modelMetadataSchema.safeParse({
    labels,
    input: { name: inputName, width, height, layout, channelOrder: flags.channels?.toUpperCase() ?? 'RGB', resize: flags.resize?.toLowerCase() ?? 'stretch' },
    normalization: { scale, mean, std },
    output: { name: outputName, kind: flags.outputKind?.toLowerCase() ?? 'probabilities' },
  });
  // Issues on values already reported above would only repeat them.
  if (!parsed.success) for (const p of zodProblems(parsed.error, true)) if (!problems.some((q) => q.split(':')[0] === p.split(':')[0])) problems.push(p);
  if (problems.length > 0 || !parsed.success) return { ok: false, problems };
  return checked(parsed.data, io);
}

/** The model's metadata from a JSON file in the contract's format (what the registry takes). */
export async function metadataFromFile(path: string, io: ModelIo): Promise<Described> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    return { ok: false, problems: [`--metadata: cannot read ${path}: ${(err as Error).message}`] };
  }
  const parsed = modelMetadataSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, problems: zodProblems(parsed.error, false).map((p) => `--metadata ${path}: ${p}`) };
  return checked(parsed.data, io);
}

/** The same input/output check the registry and the worker apply, here before any camera starts. */
function checked(metadata: ModelMetadata, io: ModelIo): Described {
  const fit = checkModelIo(io.inputs, io.outputs, metadata);
  if (!fit.ok) return { ok: false, problems: [`model does not match its metadata (${fit.field}): ${fit.error}`] };
  return { ok: true, metadata };
}
