import { addLabelCounts, type LabelCounts } from './label-counts.js';

/** What a camera's window counts, and what sums of windows (rollups, cohorts) count the same way. */
export interface FrameTotals {
  framesReceived: number;
  framesInferred: number;
  /** frames replaced by a newer one before inference took them (skipped) */
  framesDropped: number;
  inferenceErrors: number;
  classCounts: LabelCounts;
}

/** Adds `from` (a camera's window, or another sum) into `into`. */
export function addFrameTotals(into: FrameTotals, from: FrameTotals): void {
  into.framesReceived += from.framesReceived;
  into.framesInferred += from.framesInferred;
  into.framesDropped += from.framesDropped;
  into.inferenceErrors += from.inferenceErrors;
  addLabelCounts(into.classCounts, from.classCounts);
}
