/**
 * SVG for cats and dogs. Both are drawn facing right in a unit frame (1 = body length,
 * origin on the ground under the body, y up is negative) and mirrored for "left".
 *
 * The shape cues the classifier is meant to pick up:
 * - cat: slim body and thin legs, tall pointy ears, long tail curving upwards, whiskers;
 * - dog: bulky body and thick legs, long snout with a dark nose, floppy hanging ears,
 *   short stubby tail, often a collar.
 */
import { groundShadow } from './park-svg.js';
import type { AnimalSpec } from './scene-spec.js';
import { num } from './svg-number.js';

/** Unit-frame coordinates need three decimals: one unit is a whole body length. */
const u = (v: number): string => String(Math.round(v * 1000) / 1000);

const uEllipse = (cx: number, cy: number, rx: number, ry: number, fill: string, rotateDeg = 0): string =>
  `<ellipse cx="${u(cx)}" cy="${u(cy)}" rx="${u(rx)}" ry="${u(ry)}" fill="${fill}"` +
  (rotateDeg === 0 ? '/>' : ` transform="rotate(${u(rotateDeg)} ${u(cx)} ${u(cy)})"/>`);

const uRect = (x: number, y: number, w: number, h: number, fill: string, radius = 0): string =>
  `<rect x="${u(x)}" y="${u(y)}" width="${u(w)}" height="${u(h)}" rx="${u(radius)}" fill="${fill}"/>`;

const uPolygon = (points: readonly (readonly [number, number])[], fill: string): string =>
  `<polygon points="${points.map(([x, y]) => `${u(x)},${u(y)}`).join(' ')}" fill="${fill}"/>`;

const uStroke = (d: string, colour: string, width: number): string =>
  `<path d="${d}" fill="none" stroke="${colour}" stroke-width="${u(width)}" stroke-linecap="round"/>`;

/** Whiskers must contrast with the fur to be visible at all. */
function whiskerColour(fur: string): string {
  const r = parseInt(fur.slice(1, 3), 16);
  const g = parseInt(fur.slice(3, 5), 16);
  const b = parseInt(fur.slice(5, 7), 16);
  return 0.299 * r + 0.587 * g + 0.114 * b < 110 ? '#e6e6e6' : '#303030';
}

function catHead(a: AnimalSpec, hx: number, hy: number): string {
  const hr = 0.15 * a.headScale;
  const eh = 0.24 * a.earScale;
  const parts = [
    // Tall pointy ears sit on top of the head.
    uPolygon([[hx - 0.95 * hr, hy - 0.3 * hr], [hx - 0.75 * hr, hy - hr - eh], [hx - 0.1 * hr, hy - 0.92 * hr]], a.fur),
    uPolygon([[hx + 0.05 * hr, hy - 0.95 * hr], [hx + 0.7 * hr, hy - hr - eh], [hx + 0.95 * hr, hy - 0.3 * hr]], a.fur),
    uPolygon([[hx - 0.75 * hr, hy - 0.5 * hr], [hx - 0.7 * hr, hy - hr - eh * 0.6], [hx - 0.3 * hr, hy - 0.85 * hr]], '#e8a0a8'),
    uPolygon([[hx + 0.25 * hr, hy - 0.88 * hr], [hx + 0.65 * hr, hy - hr - eh * 0.6], [hx + 0.75 * hr, hy - 0.5 * hr]], '#e8a0a8'),
    uEllipse(hx, hy, hr, hr * 0.92, a.fur),
  ];
  if (a.patch) parts.push(uEllipse(hx + 0.45 * hr, hy + 0.45 * hr, 0.5 * hr, 0.38 * hr, a.patch));
  parts.push(
    uEllipse(hx + 0.5 * hr, hy - 0.15 * hr, 0.2 * hr, 0.16 * hr, a.eye),
    uEllipse(hx + 0.5 * hr, hy - 0.15 * hr, 0.06 * hr, 0.15 * hr, '#000'),
    uEllipse(hx - 0.05 * hr, hy - 0.15 * hr, 0.18 * hr, 0.15 * hr, a.eye),
    uEllipse(hx - 0.05 * hr, hy - 0.15 * hr, 0.05 * hr, 0.14 * hr, '#000'),
    uPolygon([[hx + 0.85 * hr, hy + 0.1 * hr], [hx + 1.05 * hr, hy + 0.1 * hr], [hx + 0.95 * hr, hy + 0.28 * hr]], '#d9737f'),
  );
  const wc = whiskerColour(a.fur);
  const wx = hx + 0.9 * hr;
  const wy = hy + 0.35 * hr;
  parts.push(
    uStroke(
      `M${u(wx)} ${u(wy)} L${u(wx + hr * 1.2)} ${u(wy - hr * 0.25)} M${u(wx)} ${u(wy)} L${u(wx + hr * 1.25)} ${u(wy + hr * 0.05)} ` +
        `M${u(wx)} ${u(wy)} L${u(wx + hr * 1.15)} ${u(wy + hr * 0.35)} M${u(wx - hr * 0.4)} ${u(wy)} L${u(wx - hr * 1.3)} ${u(wy - hr * 0.1)} ` +
        `M${u(wx - hr * 0.4)} ${u(wy)} L${u(wx - hr * 1.3)} ${u(wy + hr * 0.25)}`,
      wc,
      0.014,
    ),
  );
  return parts.join('');
}

function dogHead(a: AnimalSpec, hx: number, hy: number): string {
  const hs = a.headScale;
  const rx = 0.15 * hs;
  const ry = 0.13 * hs;
  const snoutLen = 0.24 * a.snoutScale * hs;
  const snoutTop = hy - 0.01;
  const snoutH = 0.1 * hs;
  const parts = [
    uEllipse(hx, hy, rx, ry, a.fur),
    // Long muzzle ending in a dark nose.
    uRect(hx + 0.2 * rx, snoutTop, snoutLen + 0.6 * rx, snoutH, a.patch ?? a.fur, snoutH * 0.45),
    uEllipse(hx + 0.8 * rx + snoutLen, snoutTop + 0.2 * snoutH, 0.04 * hs, 0.033 * hs, '#111'),
    uStroke(`M${u(hx + 0.6 * rx)} ${u(snoutTop + snoutH * 0.9)} L${u(hx + 0.6 * rx + snoutLen * 0.8)} ${u(snoutTop + snoutH * 0.75)}`, '#2a1a14', 0.012),
    uEllipse(hx + 0.25 * rx, hy - 0.3 * ry, 0.026 * hs, 0.026 * hs, '#111'),
    // Floppy ear hanging down the side of the head.
    uEllipse(hx - 0.35 * rx, hy + 0.35 * ry, 0.07 * a.earScale * hs, 0.17 * a.earScale * hs, a.furDark, 18),
  ];
  return parts.join('');
}

function catStanding(a: AnimalSpec): string {
  const bt = 0.12 * a.bodyScale;
  const legLen = 0.32;
  const by = -legLen - bt * 0.7;
  const t = a.tailScale;
  const hx = 0.44;
  const hy = by - 0.2;
  return [
    // Long tail curling upwards behind the body.
    uStroke(`M-0.36 ${u(by)} C-0.58 ${u(by)} -0.62 ${u(by - 0.5 * t)} -0.5 ${u(by - 0.7 * t)}`, a.fur, 0.07),
    uRect(-0.3, by, 0.06, -by, a.furDark, 0.02),
    uRect(0.22, by, 0.06, -by, a.furDark, 0.02),
    uEllipse(0, by, 0.42, bt, a.fur),
    uEllipse(0.35, by - 0.08, 0.08, 0.12, a.fur, 30),
    uRect(-0.37, by, 0.06, -by, a.fur, 0.02),
    uRect(0.29, by, 0.06, -by, a.fur, 0.02),
    a.patch ? uEllipse(0.05, by + bt * 0.5, 0.25, bt * 0.4, a.patch) : '',
    catHead(a, hx, hy),
  ].join('');
}

function catSitting(a: AnimalSpec): string {
  const bs = a.bodyScale;
  const t = a.tailScale;
  return [
    uStroke(`M-0.16 -0.05 C-0.42 -0.03 -0.45 ${u(-0.45 * t)} -0.36 ${u(-0.75 * t)}`, a.fur, 0.07),
    uEllipse(-0.06, -0.13, 0.19 * bs, 0.13, a.furDark),
    uEllipse(0.02, -0.3, 0.15 * bs, 0.3, a.fur),
    a.patch ? uEllipse(0.09, -0.38, 0.06, 0.14, a.patch) : '',
    uRect(0.05, -0.34, 0.055, 0.34, a.fur, 0.02),
    uRect(0.12, -0.34, 0.055, 0.34, a.fur, 0.02),
    uEllipse(0.1, -0.01, 0.05, 0.02, a.furDark),
    uEllipse(0.17, -0.01, 0.05, 0.02, a.furDark),
    catHead(a, 0.07, -0.66),
  ].join('');
}

function collar(a: AnimalSpec, x: number, y: number, tiltDeg: number): string {
  if (!a.collar) return '';
  return uEllipse(x, y, 0.035, 0.12 * a.headScale, a.collar, tiltDeg) + uEllipse(x + 0.02, y + 0.1, 0.025, 0.025, '#e8c547');
}

function dogStanding(a: AnimalSpec): string {
  const bt = 0.22 * a.bodyScale;
  const legLen = 0.28;
  const by = -legLen - bt * 0.75;
  const t = a.tailScale;
  const hx = 0.5;
  const hy = by - 0.26;
  return [
    // Short stubby tail angled up.
    uStroke(`M-0.42 ${u(by - 0.04)} L${u(-0.42 - 0.13 * t)} ${u(by - 0.04 - 0.16 * t)}`, a.fur, 0.08),
    uRect(-0.32, by, 0.11, -by, a.furDark, 0.03),
    uRect(0.2, by, 0.11, -by, a.furDark, 0.03),
    uEllipse(0, by, 0.46, bt, a.fur),
    uEllipse(0.28, by - 0.02, 0.18, bt * 1.05, a.fur),
    uEllipse(0.42, by - 0.13, 0.11, 0.16, a.fur, 35),
    a.patch ? uEllipse(0.33, by + bt * 0.3, 0.1, bt * 0.55, a.patch) : '',
    collar(a, 0.43, by - 0.13, 35),
    uRect(-0.4, by, 0.11, -by + 0.01, a.fur, 0.03),
    uRect(0.28, by, 0.11, -by + 0.01, a.fur, 0.03),
    uEllipse(-0.33, -0.01, 0.08, 0.03, a.furDark),
    uEllipse(0.35, -0.01, 0.08, 0.03, a.furDark),
    dogHead(a, hx, hy),
  ].join('');
}

function dogSitting(a: AnimalSpec): string {
  const bs = a.bodyScale;
  const t = a.tailScale;
  return [
    uStroke(`M-0.3 -0.05 L${u(-0.3 - 0.16 * t)} ${u(-0.09 - 0.05 * t)}`, a.fur, 0.08),
    uEllipse(-0.1, -0.16, 0.27 * bs, 0.16, a.furDark),
    uEllipse(0.02, -0.34, 0.24 * bs, 0.3, a.fur),
    a.patch ? uEllipse(0.12, -0.38, 0.09, 0.16, a.patch) : '',
    uRect(0.06, -0.4, 0.1, 0.4, a.fur, 0.03),
    uRect(0.17, -0.4, 0.1, 0.4, a.fur, 0.03),
    uEllipse(0.13, -0.01, 0.08, 0.03, a.furDark),
    uEllipse(0.24, -0.01, 0.08, 0.03, a.furDark),
    collar(a, 0.1, -0.58, 10),
    dogHead(a, 0.12, -0.74),
  ].join('');
}

export function animalSvg(a: AnimalSpec): string {
  const body =
    a.species === 'cat'
      ? a.pose === 'standing'
        ? catStanding(a)
        : catSitting(a)
      : a.pose === 'standing'
        ? dogStanding(a)
        : dogSitting(a);
  const mirror = a.facing === 'left' ? -1 : 1;
  const shadowHalfWidth = a.size * (a.pose === 'standing' ? 0.5 : 0.3);
  return (
    groundShadow(a.x, a.groundY, shadowHalfWidth) +
    `<g transform="translate(${num(a.x)} ${num(a.groundY)}) scale(${num(mirror * a.size)} ${num(a.size)})">${body}</g>`
  );
}
