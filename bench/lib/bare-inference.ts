/**
 * How long one inference takes on the bare engine (session.run on this
 * thread, the agent's session options, a tensor normalised in advance):
 * the yardstick the camera benchmark's frame ages are compared with.
 */
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { agentSessionOptions, createPreprocessor } from '@perch/agent';
import type { BenchModel } from './bench-models.js';
import { syntheticFrame } from './frames.js';
import { round, summarizeLatencies, type LatencySummary } from './stats.js';
import { LoopSample, runFor } from './timed-loop.js';

export async function bareInference(model: BenchModel, batch: number, durationMs: number, intraOpThreads = 1): Promise<LatencySummary & { runs: number }> {
  const { width, height, layout } = model.metadata.input;
  const preprocess = createPreprocessor(model.metadata);
  const frameValues = width * height * 3;
  const data = new Float32Array(batch * frameValues);
  for (let i = 0; i < batch; i++) preprocess(syntheticFrame(width, height, i + 1), data.subarray(i * frameValues, (i + 1) * frameValues));
  const tensor = new Tensor('float32', data, layout === 'NCHW' ? [batch, 3, height, width] : [batch, height, width, 3]);
  const session = await InferenceSession.create(model.modelPath, agentSessionOptions(intraOpThreads));
  try {
    const op = () => session.run({ [model.metadata.input.name]: tensor });
    await runFor(Math.min(500, durationMs / 4), op);
    const sample = new LoopSample();
    await runFor(durationMs, op, sample);
    const s = summarizeLatencies(sample.latenciesMs);
    return { p50Ms: round(s.p50Ms), p95Ms: round(s.p95Ms), maxMs: round(s.maxMs), runs: sample.runs };
  } finally {
    await session.release();
  }
}
