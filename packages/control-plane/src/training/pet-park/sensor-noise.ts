/**
 * Fast approximately-Gaussian pixel noise. Box-Muller per pixel costs more than
 * rendering the scene, so samples come from a fixed table of normals indexed by a
 * seeded integer stream; that is plenty random for sensor grain.
 */
import { createRng, mulberry32 } from './prng.js';

const TABLE_BITS = 12;
const TABLE_MASK = (1 << TABLE_BITS) - 1;

const NORMAL_TABLE: Float32Array = (() => {
  const rng = createRng(0x5eed);
  const table = new Float32Array(1 << TABLE_BITS);
  for (let i = 0; i < table.length; i++) table[i] = rng.normal();
  return table;
})();

/** Fills `out` with N(0, sigma^2) samples determined by `seed`. */
export function fillNoise(out: Float32Array, sigma: number, seed: number): void {
  const next = mulberry32(seed);
  for (let i = 0; i < out.length; i += 2) {
    // One 32-bit draw yields two table indices.
    const bits = Math.floor(next() * 4294967296);
    out[i] = sigma * (NORMAL_TABLE[bits & TABLE_MASK] ?? 0);
    if (i + 1 < out.length) out[i + 1] = sigma * (NORMAL_TABLE[(bits >>> TABLE_BITS) & TABLE_MASK] ?? 0);
  }
}
