import { z } from 'zod';

/**
 * A model's golden input: a frame both sides make from a seed, and the
 * probabilities the registry's onnxruntime gave for it. A device runs the
 * frame through a new model before switching to it and refuses the model
 * when its own answer differs: a file that loads but computes something
 * else (a broken conversion, a mismatched runtime) never reaches a camera.
 * The frame travels as its pattern id and seed, never as pixels.
 */
export const GOLDEN_PATTERN = 'seeded-rgb24.v1';

export const DEFAULT_GOLDEN_TOLERANCE = 1e-3;

export const modelGoldenSchema = z.object({
  /** how the frame is made, at the model's input width x height (goldenFrame) */
  frame: z.object({ pattern: z.literal(GOLDEN_PATTERN), seed: z.number().int().min(0).max(0xffffffff) }),
  /** the model's output for the frame as probabilities (after the device's softmax for logits), one per label */
  probabilities: z.array(z.number().finite()).min(2).max(1000),
  /** the largest difference allowed between any expected and actual probability */
  tolerance: z.number().positive().max(1).default(DEFAULT_GOLDEN_TOLERANCE),
});
export type ModelGolden = z.infer<typeof modelGoldenSchema>;

/**
 * The golden frame: rgb24, width x height, from a seed. Integer arithmetic
 * only (mulberry32 without its float step), so every platform and Node
 * version makes the same bytes; the pattern never changes under its id (a
 * change is a new id). Each channel sits around its own seeded level in
 * 40..215 with a diagonal ramp and noise of ±40 on it: channel means differ
 * from seed to seed, no value clips, and every normalisation sees a spread.
 */
export function goldenFrame(seed: number, width: number, height: number): Uint8Array {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const level = [40 + (next() % 176), 40 + (next() % 176), 40 + (next() % 176)];
  const frame = new Uint8Array(width * height * 3);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++, i++) {
        const ramp = ((x * 5 + y * 3 + c * 7) % 41) - 20;
        const noise = (next() % 41) - 20;
        frame[i] = Math.min(255, Math.max(0, (level[c] as number) + ramp + noise));
      }
    }
  }
  return frame;
}

export type GoldenComparison = { ok: true; maxDiff: number } | { ok: false; maxDiff: number; reason: string };

/** Compares a model's probabilities for the golden frame with the expected ones. */
export function compareGolden(actual: ArrayLike<number>, golden: ModelGolden): GoldenComparison {
  const expected = golden.probabilities;
  if (actual.length !== expected.length) {
    return { ok: false, maxDiff: Number.POSITIVE_INFINITY, reason: `golden input: the model gave ${actual.length} probabilities, ${expected.length} were expected` };
  }
  let maxDiff = 0;
  let at = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs((actual[i] as number) - (expected[i] as number));
    // NaN compares false with everything: it must count as the worst difference, not be skipped.
    if (!(d <= maxDiff)) {
      maxDiff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      at = i;
    }
  }
  if (maxDiff <= golden.tolerance) return { ok: true, maxDiff };
  return {
    ok: false,
    maxDiff,
    reason: `golden input: max difference ${maxDiff.toPrecision(3)} (class ${at}: expected ${expected[at]}, got ${actual[at]}) exceeds the tolerance ${golden.tolerance}`,
  };
}
