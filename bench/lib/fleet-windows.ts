/**
 * Telemetry windows for simulated devices: what an agent with a few cameras
 * publishes (top-1 class counts, confidence and latency histograms with the
 * contract's bin edges, frame ages, event-loop lag, outbox counts), built
 * with the shared histogram helpers and checked against the shared schema
 * once. A fleet sends tens of thousands a second, so the camera part is
 * built and encoded once per variant and a window is the device's header
 * spliced in front of one: valid JSON, and the same bytes every time the
 * same (device, seq) is sent again.
 */
import { emptyHistogram, LATENCY_SPEC, observe, telemetryWindowSchema, type CameraWindow, type Histogram, type ModelRef, type TelemetryWindow } from '@perch/shared';
import { mulberry32 } from '../../packages/control-plane/src/training/pet-park/prng.js';

export interface WindowShape {
  /** cameras per device */
  cameras: number;
  /** the model's labels; top-1 counts are spread over them */
  labels: readonly string[];
  /** frames per second each camera delivers */
  fps: number;
}

export const DEFAULT_WINDOW_SHAPE: WindowShape = { cameras: 1, labels: ['cat', 'dog', 'empty'], fps: 5 };

/** What the simulated fleet runs until a desired state says otherwise. */
export const FLEET_MODEL: ModelRef = { name: 'fleet-sim', version: '1.0.0', sha256: 'f'.repeat(64) };

/** Variants per factory: enough that neighbouring devices do not send identical bodies. */
const VARIANTS = 32;

export class TelemetryWindowFactory {
  private readonly bodies: string[];

  constructor(
    readonly shape: WindowShape,
    readonly intervalMs: number,
    seed = 1,
  ) {
    const rng = mulberry32(seed);
    this.bodies = Array.from({ length: VARIANTS }, () => JSON.stringify(cameraWindows(shape, intervalMs, rng)));
    // One full window through the contract's schema: a factory that builds invalid windows fails here, not in the control plane's log.
    const probe = JSON.parse(this.encode('probe-device', 0, 0, intervalMs, FLEET_MODEL, 0).toString('utf8')) as unknown;
    const checked = telemetryWindowSchema.safeParse(probe);
    if (!checked.success) throw new Error(`simulated telemetry window does not match the schema: ${checked.error.message}`);
  }

  /**
   * The window `seq` of `deviceId`, ending at `windowEnd`. `variant` picks
   * the camera part (same variant, same bytes); `pending` is the device's
   * outbox size when the window closed.
   */
  encode(deviceId: string, seq: number, variant: number, windowEnd: number, model: ModelRef | null, pending: number): Buffer {
    const body = this.bodies[variant % VARIANTS] as string;
    const start = Math.max(0, windowEnd - this.intervalMs);
    const modelJson = model ? `{"name":"${model.name}","version":"${model.version}","sha256":"${model.sha256}"}` : 'null';
    // deviceId and the model ref match their schemas' character sets: nothing in them needs escaping.
    return Buffer.from(
      `{"deviceId":"${deviceId}","seq":${seq},"windowStart":${start},"windowEnd":${windowEnd},"model":${modelJson},` +
        `"outbox":{"pending":${pending},"droppedInWindow":0,"droppedTotal":0},"cameras":${body}}`,
      'utf8',
    );
  }
}

/** Reads `windowEnd` out of a window's first bytes without parsing it all (the bare broker's subscriber only counts). */
export function windowEndOf(payload: Uint8Array): number | null {
  const head = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('latin1', 0, Math.min(payload.byteLength, 200));
  const m = /"windowEnd":(\d+)/.exec(head);
  return m ? Number(m[1]) : null;
}

function cameraWindows(shape: WindowShape, intervalMs: number, rng: () => number): CameraWindow[] {
  const frames = Math.max(1, Math.round((shape.fps * intervalMs) / 1000));
  return Array.from({ length: shape.cameras }, (_, c) => {
    const confidence = emptyHistogram('confidence.v1');
    const latency = emptyHistogram(LATENCY_SPEC);
    const age = emptyHistogram(LATENCY_SPEC);
    const classCounts: Record<string, number> = {};
    // A scene mostly shows one class: skew the draw towards the first labels.
    let inferred = 0;
    const received = frames;
    const dropped = rng() < 0.05 ? 1 : 0;
    for (let f = 0; f < received - dropped; f++) {
      const label = shape.labels[Math.min(shape.labels.length - 1, Math.floor(rng() ** 2 * shape.labels.length))] as string;
      classCounts[label] = (classCounts[label] ?? 0) + 1;
      observe(confidence, 0.4 + 0.6 * rng());
      observe(latency, 18 + 12 * rng() + (rng() < 0.02 ? 40 * rng() : 0));
      observe(age, 2 * rng());
      inferred++;
    }
    const cam: CameraWindow = {
      cameraId: `cam-${c}`,
      framesReceived: received,
      framesInferred: inferred,
      framesDropped: dropped,
      inferenceErrors: 0,
      classCounts,
      confidence: round(confidence),
      latencyMs: round(latency),
      frameAgeMs: { inference: round(age) },
      health: { state: 'online', restarts: 0, stalls: 0 },
    };
    return cam;
  });
}

/** Sums with a few decimals, as an agent's JSON carries them. */
function round(h: Histogram): Histogram {
  return { ...h, sum: Math.round(h.sum * 1000) / 1000 };
}

/** For tests: the window `encode` makes, parsed. */
export function decodeWindow(payload: Buffer): TelemetryWindow {
  return telemetryWindowSchema.parse(JSON.parse(payload.toString('utf8')));
}
