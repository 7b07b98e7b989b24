/**
 * Random scene sampling. Cats and dogs draw from the same colour, size, position and
 * lighting distributions on purpose: only their shapes differ, so a classifier has to
 * learn shape rather than a shortcut such as "orange means cat".
 */
import { hslToHex, shade, type Hsl } from './colour.js';
import type { PetParkLabel } from './labels.js';
import type { Rng } from './prng.js';
import {
  SCENE_VIEW_HEIGHT,
  SCENE_VIEW_WIDTH,
  type AnimalSpec,
  type BackgroundSpec,
  type LightingSpec,
  type PropSpec,
  type SceneSpec,
  type Species,
} from './scene-spec.js';

/** Fur colours shared by both species. */
const FUR_PALETTE: readonly Hsl[] = [
  { h: 0, s: 0, l: 0.1 }, // black
  { h: 0, s: 0, l: 0.3 }, // charcoal
  { h: 210, s: 0.06, l: 0.55 }, // grey
  { h: 40, s: 0.25, l: 0.9 }, // white
  { h: 40, s: 0.45, l: 0.78 }, // cream
  { h: 28, s: 0.75, l: 0.5 }, // ginger
  { h: 24, s: 0.5, l: 0.28 }, // brown
  { h: 35, s: 0.5, l: 0.55 }, // tan
  { h: 42, s: 0.65, l: 0.58 }, // golden
];

const EYE_COLOURS: readonly string[] = ['#2b2b1a', '#3a5f0b', '#b58b00', '#1a1a1a', '#4a3320'];
const COLLAR_COLOURS: readonly string[] = ['#c0262d', '#1f4fb5', '#1d8a3b', '#d47f00', '#7a1fa2'];
const PROP_COLOURS: readonly string[] = ['#d62828', '#f77f00', '#fcbf49', '#2a9d8f', '#457b9d', '#e9c46a', '#8338ec'];

function jitterColour(rng: Rng, base: Hsl, hue: number, sat: number, light: number): Hsl {
  return {
    h: base.h + rng.range(-hue, hue),
    s: base.s + rng.range(-sat, sat),
    l: base.l + rng.range(-light, light),
  };
}

function sampleBackground(rng: Rng): BackgroundSpec {
  const horizonY = rng.range(28, 55);
  const skyKind = rng.pick(['day', 'overcast', 'dusk'] as const);
  const skyBase: Hsl =
    skyKind === 'day'
      ? { h: rng.range(195, 220), s: rng.range(0.45, 0.75), l: rng.range(0.55, 0.75) }
      : skyKind === 'overcast'
        ? { h: rng.range(200, 230), s: rng.range(0, 0.12), l: rng.range(0.6, 0.85) }
        : { h: rng.range(15, 40), s: rng.range(0.4, 0.7), l: rng.range(0.55, 0.75) };
  const grassBase: Hsl = { h: rng.range(65, 130), s: rng.range(0.25, 0.6), l: rng.range(0.25, 0.5) };

  const trees = Array.from({ length: rng.int(0, 4) }, () => {
    const crownRadius = rng.range(6, 16);
    return {
      x: rng.range(0, SCENE_VIEW_WIDTH),
      y: horizonY + rng.range(-1, 4),
      crownRadius,
      crown: hslToHex({ h: rng.range(80, 140), s: rng.range(0.25, 0.55), l: rng.range(0.15, 0.35) }),
      trunk: hslToHex({ h: rng.range(20, 35), s: rng.range(0.25, 0.45), l: rng.range(0.15, 0.3) }),
    };
  });

  const fence = rng.chance(0.5)
    ? {
        topY: horizonY + rng.range(-2, 6),
        height: rng.range(6, 12),
        postSpacing: rng.range(8, 16),
        colour: hslToHex(rng.pick<Hsl>([
          { h: 25, s: 0.4, l: 0.3 },
          { h: 0, s: 0, l: 0.85 },
          { h: 0, s: 0, l: 0.4 },
        ])),
      }
    : null;

  const path = rng.chance(0.55)
    ? (() => {
        const pathColour: Hsl = { h: rng.range(25, 45), s: rng.range(0.05, 0.35), l: rng.range(0.5, 0.8) };
        return {
          farX: rng.range(20, SCENE_VIEW_WIDTH - 20),
          farWidth: rng.range(6, 24),
          nearX: rng.range(-20, SCENE_VIEW_WIDTH + 20),
          nearWidth: rng.range(35, 90),
          colour: hslToHex(pathColour),
          edge: hslToHex(shade(pathColour, 0.8)),
        };
      })()
    : null;

  const tufts = Array.from({ length: rng.int(10, 40) }, () => {
    const y = rng.range(horizonY + 2, SCENE_VIEW_HEIGHT);
    return {
      x: rng.range(0, SCENE_VIEW_WIDTH),
      y,
      // Perspective: tufts near the camera are bigger.
      size: 0.6 + (2.2 * (y - horizonY)) / (SCENE_VIEW_HEIGHT - horizonY),
      colour: hslToHex(
        rng.chance(0.12)
          ? { h: rng.pick([0, 50, 60, 300]), s: 0.7, l: rng.range(0.6, 0.85) } // flowers
          : jitterColour(rng, grassBase, 10, 0.1, 0.12),
      ),
    };
  });

  return {
    horizonY,
    skyTop: hslToHex(shade(skyBase, rng.range(0.75, 0.95))),
    skyBottom: hslToHex({ ...skyBase, l: Math.min(0.95, skyBase.l * rng.range(1.05, 1.25)) }),
    grassFar: hslToHex({ ...grassBase, h: grassBase.h - rng.range(0, 15), l: grassBase.l * rng.range(1.05, 1.3) }),
    grassNear: hslToHex(shade(grassBase, rng.range(0.75, 1))),
    treeline: hslToHex({ h: rng.range(80, 140), s: rng.range(0.2, 0.5), l: rng.range(0.15, 0.32) }),
    treelineBumps: rng.chance(0.7)
      ? Array.from({ length: rng.int(4, 12) }, () => ({ x: rng.range(-10, SCENE_VIEW_WIDTH + 10), radius: rng.range(5, 16) }))
      : [],
    trees,
    fence,
    path,
    tufts,
  };
}

/** Scale that makes things further from the camera (closer to the horizon) smaller. */
function perspective(groundY: number, horizonY: number): number {
  return 0.55 + (0.45 * (groundY - horizonY)) / (SCENE_VIEW_HEIGHT - horizonY);
}

function sampleProps(rng: Rng, horizonY: number): PropSpec[] {
  const props: PropSpec[] = [];
  const groundY = (): number => rng.range(horizonY + 12, SCENE_VIEW_HEIGHT - 4);
  if (rng.chance(0.4)) {
    const y = groundY();
    props.push({
      kind: 'bench',
      x: rng.range(15, SCENE_VIEW_WIDTH - 15),
      groundY: y,
      size: rng.range(28, 44) * perspective(y, horizonY),
      wood: hslToHex({ h: rng.range(20, 35), s: rng.range(0.3, 0.55), l: rng.range(0.25, 0.5) }),
      frame: hslToHex({ h: 0, s: 0, l: rng.range(0.1, 0.35) }),
    });
  }
  const balls = rng.chance(0.35) ? rng.int(1, 2) : 0;
  for (let i = 0; i < balls; i++) {
    const y = groundY();
    props.push({
      kind: 'ball',
      x: rng.range(8, SCENE_VIEW_WIDTH - 8),
      groundY: y,
      size: rng.range(4, 9) * perspective(y, horizonY),
      colour: rng.pick(PROP_COLOURS),
      stripe: rng.pick(['#ffffff', '#222222', '#f1fa3c']),
    });
  }
  if (rng.chance(0.3)) {
    const y = groundY();
    props.push({
      kind: 'bin',
      x: rng.range(8, SCENE_VIEW_WIDTH - 8),
      groundY: y,
      size: rng.range(10, 18) * perspective(y, horizonY),
      colour: hslToHex({ h: rng.range(0, 360), s: rng.range(0.1, 0.5), l: rng.range(0.2, 0.5) }),
      lid: hslToHex({ h: 0, s: 0, l: rng.range(0.15, 0.4) }),
    });
  }
  return props;
}

function sampleAnimal(rng: Rng, species: Species, horizonY: number): AnimalSpec {
  const pose = rng.chance(0.5) ? 'standing' : 'sitting';
  const groundY = rng.range(Math.max(horizonY + 30, 82), SCENE_VIEW_HEIGHT - 3);
  // Animals are the subject of the camera: large enough that ears and tails survive the 64x64 stretch.
  const depth = (groundY - horizonY) / (SCENE_VIEW_HEIGHT - horizonY);
  const size = rng.range(55, 85) * (0.75 + 0.25 * depth);
  const margin = size * 0.55;
  const furBase = rng.pick(FUR_PALETTE);
  const fur = jitterColour(rng, furBase, 6, 0.06, 0.05);
  return {
    species,
    pose,
    facing: rng.chance(0.5) ? 'left' : 'right',
    x: rng.range(margin, SCENE_VIEW_WIDTH - margin),
    groundY,
    size,
    fur: hslToHex(fur),
    furDark: hslToHex(shade(fur, fur.l < 0.2 ? 0.7 : 0.78)),
    patch: rng.chance(0.35) ? hslToHex({ h: 40, s: 0.2, l: rng.range(0.85, 0.95) }) : null,
    eye: rng.pick(EYE_COLOURS),
    earScale: rng.range(0.85, 1.2),
    tailScale: rng.range(0.85, 1.15),
    bodyScale: rng.range(0.9, 1.12),
    headScale: rng.range(0.9, 1.12),
    snoutScale: rng.range(0.85, 1.2),
    collar: species === 'dog' && rng.chance(0.6) ? rng.pick(COLLAR_COLOURS) : null,
  };
}

function sampleLighting(rng: Rng): LightingSpec {
  const warm = rng.range(-0.08, 0.08);
  return {
    brightness: rng.range(0.65, 1.25),
    contrast: rng.range(0.7, 1.25),
    tint: [1 + warm + rng.range(-0.03, 0.03), 1 + rng.range(-0.03, 0.03), 1 - warm + rng.range(-0.03, 0.03)],
    angleDeg: rng.range(0, 360),
    highlight: rng.range(0, 0.25),
    shadow: rng.range(0, 0.3),
  };
}

/** Samples a complete scene of the given class; all randomness comes from `rng`. */
export function sampleScene(label: PetParkLabel, rng: Rng): SceneSpec {
  const background = sampleBackground(rng.fork());
  const props = sampleProps(rng.fork(), background.horizonY);
  // Forked for every label, so the same seed gives the same park, props and lighting
  // with or without an animal: the animal is then the only difference between classes.
  const animalRng = rng.fork();
  const animal = label === 'empty' ? null : sampleAnimal(animalRng, label, background.horizonY);
  return {
    label,
    background,
    props,
    animal,
    lighting: sampleLighting(rng.fork()),
    noiseSigma: rng.range(2, 9),
    noiseSeed: rng.int(0, 0x7fffffff),
  };
}
