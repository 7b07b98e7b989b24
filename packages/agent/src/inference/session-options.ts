import type { InferenceSession } from 'onnxruntime-node';

/**
 * The onnxruntime session options the agent runs every model with; the
 * benchmark's bare-engine baseline uses the same, so the ratio compares like
 * with like.
 */
export function agentSessionOptions(intraOpThreads: number): InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Idle ORT threads spin by default and would steal the cores ffmpeg decodes on.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}
