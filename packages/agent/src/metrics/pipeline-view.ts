import { modelRefOf } from '@perch/shared';
import type { InferencePipeline } from '../inference/inference-pipeline.js';
import type { RuntimeView } from './agent-metrics.js';

/**
 * The runtime as metrics and /healthz read it at scrape time. The pipeline
 * is looked up on each read, so the view can be made before the pipeline is.
 */
export function pipelineView(pipeline: () => InferencePipeline, outboxPending?: () => number): RuntimeView {
  return {
    activeModel: () => {
      const m = pipeline().activeModel;
      return m ? modelRefOf(m.target) : null;
    },
    cameraStates: () => pipeline().cameraStates(),
    shadowModel: () => {
      const m = pipeline().shadowModel;
      return m ? modelRefOf(m.target) : null;
    },
    decoders: () => pipeline().decoders,
    ...(outboxPending ? { outboxPending } : {}),
  };
}
