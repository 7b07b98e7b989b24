import { decodeJson, telemetryWindowSchema } from '@perch/shared';
import type { PendingWindow } from './telemetry-batch-writer.js';

/**
 * A telemetry window as the broker handed it over, not yet decoded. The
 * writer decodes it (JSON, then the contract's schema) in its own thread:
 * on the event loop that also serves 10,000 connections, the decoding and
 * the objects it leaves behind were a fifth of the work and most of the
 * garbage.
 */
export interface ReceivedWindow {
  /** the device its topic names */
  deviceId: string;
  payload: Uint8Array;
  /** when the control plane received it (ms) */
  receivedAt: number;
}

/** A window of a batch that did not decode: its index in the batch, and why. */
export interface RejectedWindow {
  index: number;
  reason: string;
}

/**
 * Decodes a batch: the windows that match the contract and the topic's
 * device, each with the JSON to store (the decoded value, so what the schema
 * strips is not stored), and the others with the reason.
 */
export function decodeReceived(batch: readonly ReceivedWindow[]): { windows: PendingWindow[]; rejected: RejectedWindow[] } {
  const windows: PendingWindow[] = [];
  const rejected: RejectedWindow[] = [];
  batch.forEach((r, index) => {
    const decoded = decodeJson(telemetryWindowSchema, r.payload);
    if (!decoded.ok) rejected.push({ index, reason: decoded.error });
    else if (decoded.value.deviceId !== r.deviceId) {
      rejected.push({ index, reason: `payload deviceId ${decoded.value.deviceId} does not match the topic's device ${r.deviceId}` });
    } else windows.push({ window: decoded.value, receivedAt: r.receivedAt, json: JSON.stringify(decoded.value) });
  });
  return { windows, rejected };
}
