import type { InferenceSession } from 'onnxruntime-node';

/**
 * The onnxruntime session options the agent runs every model with; the
 * benchmark's bare-engine baseline uses the same, so the ratio compares like
 * with like.
 */
export function agentSessionOptions(intraOpThreads: number, allowSpinning = false): InferenceSession.SessionOptions {
  const spin = allowSpinning ? '1' : '0';
  return {
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Idle ORT threads spin by default and would steal the cores ffmpeg decodes on: off unless asked for.
    extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
  };
}
