import type { ModelMetadata } from '@perch/shared';

/**
 * How a challenger's input is made from a frame the champion ran on. The
 * cameras' ffmpeg fits every frame to the champion's input, so that frame
 * is all there is:
 * - shared: same size, fit, layout, channel order and normalisation: the
 *   champion's preprocessed input, as it is (no second preprocessing);
 * - frame: same size and fit: the champion's rgb24 frame, preprocessed the
 *   challenger's way;
 * - resample: another size whose fit composes with the champion's (both
 *   stretch, or the same fit at the same aspect ratio): the frame rescaled;
 * - incompatible: the challenger's fit of the camera's picture cannot be
 *   made from the champion's (e.g. a crop from a letterbox).
 */
export type ChallengerInput = { kind: 'shared' } | { kind: 'frame' } | { kind: 'resample' } | { kind: 'incompatible'; reason: string };

/** Aspect ratios this close count as equal: sizes are whole pixels. */
const ASPECT_TOLERANCE = 0.01;

export function challengerInput(champion: ModelMetadata, challenger: ModelMetadata): ChallengerInput {
  const a = champion.input;
  const b = challenger.input;
  const sameSize = a.width === b.width && a.height === b.height;
  if (sameSize && a.resize === b.resize) {
    const sameTensor = a.layout === b.layout && a.channelOrder === b.channelOrder && sameNormalisation(champion, challenger);
    return sameTensor ? { kind: 'shared' } : { kind: 'frame' };
  }
  const aspect = (w: number, h: number) => w / h;
  const sameAspect = Math.abs(aspect(a.width, a.height) / aspect(b.width, b.height) - 1) <= ASPECT_TOLERANCE;
  if (a.resize === b.resize && (a.resize === 'stretch' || sameAspect)) return { kind: 'resample' };
  return {
    kind: 'incompatible',
    reason: `the challenger's input (${b.width}x${b.height}, ${b.resize}) cannot be made from the champion's frames (${a.width}x${a.height}, ${a.resize})`,
  };
}

function sameNormalisation(a: ModelMetadata, b: ModelMetadata): boolean {
  const x = a.normalization;
  const y = b.normalization;
  return x.scale === y.scale && x.mean.every((m, i) => m === y.mean[i]) && x.std.every((s, i) => s === y.std[i]);
}

/** Bilinear rescale of an rgb24 frame, sampling at pixel centres (as ffmpeg's bilinear scaler does). */
export function resampleRgb24(src: Uint8Array, sw: number, sh: number, dw: number, dh: number): Uint8Array {
  if (src.length !== sw * sh * 3) throw new RangeError(`frame has ${src.length} bytes, not ${sw}x${sh}x3`);
  const out = new Uint8Array(dw * dh * 3);
  const sx = sw / dw;
  const sy = sh / dh;
  for (let y = 0; y < dh; y++) {
    const fy = Math.min(sh - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(sh - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < dw; x++) {
      const fx = Math.min(sw - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(sw - 1, x0 + 1);
      const wx = fx - x0;
      const p00 = (y0 * sw + x0) * 3;
      const p01 = (y0 * sw + x1) * 3;
      const p10 = (y1 * sw + x0) * 3;
      const p11 = (y1 * sw + x1) * 3;
      const o = (y * dw + x) * 3;
      for (let c = 0; c < 3; c++) {
        const top = (src[p00 + c] as number) * (1 - wx) + (src[p01 + c] as number) * wx;
        const bottom = (src[p10 + c] as number) * (1 - wx) + (src[p11 + c] as number) * wx;
        out[o + c] = Math.round(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return out;
}
