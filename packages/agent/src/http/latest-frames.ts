import type { ResultSource } from '../events/detection-events.js';
import type { FrameResult } from '../inference/frame-scheduler.js';

export interface LatestFrame {
  frame: Uint8Array;
  width: number;
  height: number;
  label: string;
  confidence: number;
  /** performance.now() when the frame arrived */
  arrivedAt: number;
}

/**
 * The last inferred frame of each camera, for /snapshot/:camera. Only a
 * reference is kept: the frame came back from the worker and nothing
 * writes to it again, so holding it costs no copy.
 */
export class LatestFrames {
  private readonly frames = new Map<string, LatestFrame>();

  constructor(private readonly source: ResultSource) {}

  start(): void {
    this.source.on('result', this.onResult);
  }

  stop(): void {
    this.source.off('result', this.onResult);
    this.frames.clear();
  }

  get(cameraId: string): LatestFrame | undefined {
    return this.frames.get(cameraId);
  }

  private readonly onResult = (r: FrameResult): void => {
    this.frames.set(r.cameraId, { frame: r.frame, width: r.width, height: r.height, label: r.label, confidence: r.confidence, arrivedAt: r.arrivedAt });
  };
}
