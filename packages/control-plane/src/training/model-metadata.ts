/**
 * The JSON written next to the ONNX file: everything a runtime needs to feed the model
 * (input size, layout, channel order, normalisation, labels) plus how it was trained.
 * Preprocessing contract: x = (pixel * scale - mean[c]) / std[c], channels in `channelOrder`.
 */
import { z } from 'zod';

const triple = z.tuple([z.number(), z.number(), z.number()]);

export const modelMetadataSchema = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  labels: z.array(z.string().min(1)).min(2),
  input: z.object({
    name: z.string().min(1),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    layout: z.literal('NCHW'),
    channelOrder: z.literal('RGB'),
    /** Frames are stretched to width x height (ffmpeg `scale=W:H`), as the training images were. */
    resize: z.literal('stretch'),
  }),
  normalization: z.object({ scale: z.number().positive(), mean: triple, std: triple }),
  output: z.object({ name: z.string().min(1), kind: z.literal('probabilities') }),
  training: z.object({
    seed: z.number().int(),
    testSeed: z.number().int(),
    trainCount: z.number().int(),
    testCount: z.number().int(),
    heldOutAccuracy: z.number().min(0).max(1),
    /** confusion[trueLabel][predictedLabel], in `labels` order. */
    confusion: z.array(z.array(z.number().int().min(0))),
    trainAccuracy: z.number().min(0).max(1),
    featureCount: z.number().int().positive(),
    durationMs: z.number().min(0),
    /** Hash of every parameter that changes the model; a match means the files can be reused. */
    cacheKey: z.string().min(1),
    /** SHA-256 of the .onnx file, so a truncated or swapped model is never reused. */
    modelSha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
});

export type ModelMetadata = z.infer<typeof modelMetadataSchema>;
