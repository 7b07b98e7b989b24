import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emptyHistogram, LATENCY_SPEC, observe, telemetryWindowSchema, type HistogramSpecId, type TelemetryWindow } from '@perch/shared';
import type { ReceivedWindow } from '../ingest/received-telemetry.js';
import { openDatabase, type Db } from '../store/database.js';

export interface CameraSpec {
  id?: string;
  framesReceived?: number;
  framesInferred?: number;
  framesDropped?: number;
  inferenceErrors?: number;
  classCounts?: Record<string, number>;
  /** latency observations (ms) */
  latencies?: number[];
  latencySpec?: HistogramSpecId;
}

/** A telemetry window as an agent sends it, checked against the contract's schema. */
export function telemetryWindow(deviceId: string, seq: number, opts: { start?: number; durationMs?: number; cameras?: CameraSpec[] } = {}): TelemetryWindow {
  const start = opts.start ?? seq * 10_000;
  const cameras = (opts.cameras ?? [{}]).map((c, i) => {
    const latencyMs = emptyHistogram(c.latencySpec ?? LATENCY_SPEC);
    for (const v of c.latencies ?? []) observe(latencyMs, v);
    return {
      cameraId: c.id ?? `cam-${i}`,
      framesReceived: c.framesReceived ?? 10,
      framesInferred: c.framesInferred ?? 9,
      framesDropped: c.framesDropped ?? 1,
      inferenceErrors: c.inferenceErrors ?? 0,
      classCounts: c.classCounts ?? { cat: 6, dog: 3 },
      confidence: emptyHistogram('confidence.v1'),
      latencyMs,
    };
  });
  return telemetryWindowSchema.parse({ deviceId, seq, windowStart: start, windowEnd: start + (opts.durationMs ?? 10_000), model: null, cameras });
}

/** A control plane database (every migration applied) in a fresh temp folder. */
export function tempDatabase(prefix = 'perch-telemetry-'): { db: Db; dir: string; file: string; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const file = join(dir, 'perch.db');
  const db = openDatabase(file);
  return {
    db,
    dir,
    file,
    close() {
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A window as the broker hands it to the ingest: its device, its JSON bytes, when it arrived. */
export function received(window: TelemetryWindow, receivedAt = Date.now()): ReceivedWindow {
  return { deviceId: window.deviceId, payload: Buffer.from(JSON.stringify(window)), receivedAt };
}
