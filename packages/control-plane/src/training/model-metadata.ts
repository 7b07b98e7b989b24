/**
 * The JSON written next to the demo ONNX file: the contract's model metadata
 * (what a runtime needs to feed the model) plus its name, version and how it
 * was trained. The registry reads the contract's part and ignores the rest.
 */
import { modelMetadataSchema } from '@perch/shared';
import { z } from 'zod';

export const trainedModelFileSchema = modelMetadataSchema.extend({
  name: z.string().min(1),
  version: z.string().min(1),
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

export type TrainedModelFile = z.infer<typeof trainedModelFileSchema>;
