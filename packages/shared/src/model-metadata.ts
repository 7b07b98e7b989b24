import { z } from 'zod';
import { modelGoldenSchema } from './golden-input.js';

/** What a device needs to know to feed frames to a model and read its output. */
export const modelNameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, '1-64 of a-z 0-9 . _ -, starting with a letter or digit');
export const modelVersionSchema = z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/, '1-64 of 0-9 A-Z a-z . + _ -');
export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits');

const rgbTriple = z.tuple([z.number().finite(), z.number().finite(), z.number().finite()]);

export const modelMetadataSchema = z.object({
  labels: z.array(z.string().min(1).max(64)).min(2).max(1000)
    .refine((l) => new Set(l).size === l.length, 'labels must be unique')
    // Class counts are JSON objects keyed by label, and a parsed "__proto__" key sets the prototype instead:
    // that label's counts would vanish without a word at the control plane.
    .refine((l) => !l.includes('__proto__'), 'a label may not be "__proto__"'),
  input: z.object({
    name: z.string().min(1).max(128),
    width: z.number().int().min(8).max(4096),
    height: z.number().int().min(8).max(4096),
    layout: z.enum(['NCHW', 'NHWC']),
    channelOrder: z.enum(['RGB', 'BGR']),
    /**
     * How a camera frame is fitted to width x height (ffmpeg does it):
     * stretch ignores the aspect ratio; letterbox fits the whole frame and pads
     * with black; centre-crop fills the input and cuts the overhanging edges.
     */
    resize: z.enum(['stretch', 'letterbox', 'centre-crop']).default('stretch'),
  }),
  /** x = (pixel * scale - mean[c]) / std[c], pixel in 0..255, c in channelOrder */
  normalization: z.object({
    scale: z.number().positive().finite(),
    mean: rgbTriple,
    std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]),
  }),
  output: z.object({
    name: z.string().min(1).max(128),
    /** probabilities are used as they are; logits get a softmax on the device */
    kind: z.enum(['probabilities', 'logits']),
  }),
});
export type ModelMetadata = z.infer<typeof modelMetadataSchema>;
export type ModelMetadataInput = z.input<typeof modelMetadataSchema>;

export const modelRefSchema = z.object({ name: modelNameSchema, version: modelVersionSchema, sha256: sha256Schema });
export type ModelRef = z.infer<typeof modelRefSchema>;

/**
 * A model artifact as TUF describes a target file: length and hashes, plus
 * Perch's description in `custom`. The registry adds it to TUF's
 * `targets.json` on registration, so the targets role signs it; a device
 * trusts one only as that metadata lists it.
 */
export const modelTargetSchema = z.object({
  /** target path in the registry, content-addressed */
  path: z.string().regex(/^models\/[a-z0-9._-]+\/[0-9A-Za-z.+_-]+\.onnx$/),
  length: z.number().int().positive(),
  hashes: z.object({ sha256: sha256Schema }),
  custom: z.object({
    name: modelNameSchema,
    version: modelVersionSchema,
    format: z.literal('onnx'),
    metadata: modelMetadataSchema,
    createdAt: z.string().datetime({ offset: true }),
    /** the golden input and the output it must give (see golden-input.ts); absent in targets registered before it existed */
    golden: modelGoldenSchema.optional(),
    /**
     * The artifact's chunk manifest (chunk-manifest.ts), itself an artifact:
     * signing its hash signs every chunk hash in it. Absent on targets
     * registered before manifests; those download by whole-file hash only.
     */
    chunkManifest: z.object({ sha256: sha256Schema, length: z.number().int().positive() }).optional(),
  }),
});
export type ModelTarget = z.infer<typeof modelTargetSchema>;

export function modelTargetPath(name: string, version: string): string {
  return `models/${name}/${version}.onnx`;
}

export function modelRefOf(target: ModelTarget): ModelRef {
  return { name: target.custom.name, version: target.custom.version, sha256: target.hashes.sha256 };
}
