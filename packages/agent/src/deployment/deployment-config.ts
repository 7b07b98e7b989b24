import { z } from 'zod';

/**
 * How a newly switched-on model is judged. For `healthWindowSeconds` after
 * the switch the agent watches it; a window it fails sends the box back to
 * its last known-good model, and one it passes makes it the known-good one.
 * Every key has a default, so no `deployment` key means a 60 s window.
 */
export const deploymentConfigSchema = z
  .object({
    /** how long a new model is watched before it counts as known-good; 0 trusts it at once */
    healthWindowSeconds: z.number().min(0).max(24 * 3600).default(60),
    /** failed frames / all frames run in the window above which the model is rolled back */
    maxErrorRate: z.number().min(0).max(1).default(0.05),
    /** the window's p95 run time per frame may be this many times the golden input's run time */
    maxLatencyFactor: z.number().min(1).max(1000).default(5),
    /** a p95 below this never fails the window: a sub-millisecond model's run time jitters by multiples */
    latencyFloorMs: z.number().min(0).max(60_000).default(50),
    /** frames the error rate needs (and runs the p95 needs) before either can fail the window; fewer, and only every frame failing does */
    minFrames: z.number().int().min(1).max(1_000_000).default(20),
  })
  .strict()
  .prefault({});

export type DeploymentConfig = z.infer<typeof deploymentConfigSchema>;
