/**
 * Before two paths are timed against each other they must compute the same
 * thing: a faster path that does different work proves nothing.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { toProbabilities, type InferenceRunner } from '@perch/agent';
import type { ModelMetadata } from '@perch/shared';

/** Probabilities from the two paths must agree to this. */
export const AGREEMENT_TOLERANCE = 1e-5;

/**
 * Runs each batch of frames through the agent's runner and the matching
 * pre-normalised tensor through the bare session; returns the largest
 * difference in probabilities, or throws when it exceeds the tolerance.
 */
export async function checkAgreement(
  batches: { frames: Uint8Array[]; tensor: Tensor }[],
  session: InferenceSession,
  runner: InferenceRunner,
  metadata: ModelMetadata,
): Promise<number> {
  const labels = metadata.labels.length;
  let maxDifference = 0;
  for (const { frames, tensor } of batches) {
    const out = (await session.run({ [metadata.input.name]: tensor }))[metadata.output.name];
    if (!out) throw new Error(`model has no output '${metadata.output.name}'`);
    const data = out.data as Float32Array;
    const { results } = await runner.runBatch(frames.map((f) => f.slice()));
    if (results.length !== frames.length) throw new Error(`the agent returned ${results.length} results for ${frames.length} frames`);
    for (const [i, result] of results.entries()) {
      const expected = toProbabilities(Float32Array.from(data.subarray(i * labels, (i + 1) * labels)), metadata.output.kind);
      const got = result.probabilities;
      // A NaN fails the check below.
      for (const [j, p] of expected.entries()) maxDifference = Math.max(maxDifference, Math.abs(p - (got[j] ?? Number.NaN)));
    }
  }
  if (!(maxDifference <= AGREEMENT_TOLERANCE)) {
    throw new Error(`agent and bare session disagree on the same frames (max |dp| = ${maxDifference}): not comparable`);
  }
  return maxDifference;
}
