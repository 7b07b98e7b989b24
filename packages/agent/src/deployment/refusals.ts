import { DownloadError } from './artifact-downloader.js';
import { RefusedModel } from './model-activation.js';

/** Refused: the input is wrong and retrying it cannot help (bad hash, bad model). */
export class Rejected extends Error {}

/**
 * Refused because of the trust metadata the control plane serves now
 * (expired, rolled back, badly signed): refused, but judged again when the
 * same state comes back, since the repository may have been put right.
 */
export class RefusedByMetadata extends Error {}

export class Superseded extends Error {}

/**
 * How a deployment job (the champion's or the challenger's) ended early:
 * superseded (a newer state, the agent stopping), refused by the trust
 * metadata now served (judged again when the state comes back), rejected
 * (the same input can never pass) or failed (transfer, disk: may pass
 * when tried again).
 */
export function outcomeOf(err: unknown, signal: AbortSignal): 'superseded' | 'metadata' | 'rejected' | 'failed' {
  if (err instanceof Superseded || signal.aborted) return 'superseded';
  if (err instanceof RefusedByMetadata) return 'metadata';
  if (err instanceof Rejected || err instanceof RefusedModel || (err instanceof DownloadError && err.outcome === 'rejected')) return 'rejected';
  return 'failed';
}
