import { mulberry32 } from '@perch/control-plane';
/**
 * Deterministic rgb24 frames, so every run feeds the same pixels and nothing
 * is downloaded: a coloured gradient (sky over grass), a few discs (the
 * "animals") and sensor grain, all from a seeded generator. A convolutional
 * model's cost does not depend on the pixels; these only keep the inputs
 * varied and realistic enough that no path can shortcut on constant frames.
 */


const clampByte = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

export function syntheticFrame(width: number, height: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  const frame = new Uint8Array(width * height * 3);
  const horizon = height * (0.3 + 0.3 * rng());
  const discs = Array.from({ length: 1 + Math.floor(rng() * 3) }, () => ({
    x: rng() * width,
    y: horizon + rng() * (height - horizon),
    r: (0.08 + rng() * 0.15) * Math.min(width, height),
    rgb: [rng() * 255, rng() * 255, rng() * 255] as const,
  }));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sky = y < horizon;
      let r = sky ? 120 + (60 * y) / height : 40 + (30 * x) / width;
      let g = sky ? 160 + (40 * y) / height : 120 + (50 * y) / height;
      let b = sky ? 230 - (40 * y) / height : 40;
      for (const d of discs) {
        if ((x - d.x) ** 2 + (y - d.y) ** 2 <= d.r ** 2) [r, g, b] = d.rgb;
      }
      const grain = (rng() - 0.5) * 24;
      const i = (y * width + x) * 3;
      frame[i] = clampByte(r + grain);
      frame[i + 1] = clampByte(g + grain);
      frame[i + 2] = clampByte(b + grain);
    }
  }
  return frame;
}

export function syntheticFrames(width: number, height: number, count: number, seed = 1): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => syntheticFrame(width, height, seed * 1000 + i));
}
