/**
 * Colour helpers for scene sampling. Colours are produced as #rrggbb so the SVG
 * renderer never has to parse hsl() and so shades can be derived arithmetically.
 */
export interface Hsl {
  /** Hue in degrees. */
  h: number;
  /** Saturation 0..1. */
  s: number;
  /** Lightness 0..1. */
  l: number;
}

const clamp01 = (v: number): number => Math.min(1, Math.max(0, v));

export function hslToHex({ h, s, l }: Hsl): string {
  const sat = clamp01(s);
  const light = clamp01(l);
  const a = sat * Math.min(light, 1 - light);
  const channel = (n: number): string => {
    const k = (n + (((h % 360) + 360) % 360) / 30) % 12;
    const v = light - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(v * 255)
      .toString(16)
      .padStart(2, '0');
  };
  return `#${channel(0)}${channel(8)}${channel(4)}`;
}

/** Same hue, lightness scaled (factor < 1 darkens), for far-side legs, ears and shading. */
export function shade(colour: Hsl, factor: number): Hsl {
  return { h: colour.h, s: colour.s, l: clamp01(colour.l * factor) };
}
