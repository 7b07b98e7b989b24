/**
 * Plain-data description of one pet-park scene. Sampling (random) and drawing (SVG)
 * are separate steps so a scene can be re-rendered at any resolution, e.g. 160x120
 * for the training set and 320x240 for the camera video.
 *
 * Coordinates are in a fixed 160x120 scene space; the SVG viewBox stretches it to
 * the requested output size.
 */
import type { PetParkLabel } from './labels.js';

export const SCENE_VIEW_WIDTH = 160;
export const SCENE_VIEW_HEIGHT = 120;

export interface TreeSpec {
  x: number;
  /** Base of the trunk. */
  y: number;
  crownRadius: number;
  crown: string;
  trunk: string;
}

export interface FenceSpec {
  topY: number;
  height: number;
  postSpacing: number;
  colour: string;
}

export interface PathSpec {
  /** Centre x where the path meets the horizon. */
  farX: number;
  farWidth: number;
  /** Centre x at the bottom edge of the frame. */
  nearX: number;
  nearWidth: number;
  colour: string;
  edge: string;
}

export interface GrassTuft {
  x: number;
  y: number;
  size: number;
  colour: string;
}

export interface BackgroundSpec {
  horizonY: number;
  skyTop: string;
  skyBottom: string;
  grassFar: string;
  grassNear: string;
  treeline: string;
  /** Distant bushes along the horizon, drawn as overlapping ellipses. */
  treelineBumps: { x: number; radius: number }[];
  trees: TreeSpec[];
  fence: FenceSpec | null;
  path: PathSpec | null;
  tufts: GrassTuft[];
}

/** Objects standing on the grass; drawn back-to-front by groundY so they occlude plausibly. */
export type PropSpec =
  | { kind: 'bench'; x: number; groundY: number; size: number; wood: string; frame: string }
  | { kind: 'ball'; x: number; groundY: number; size: number; colour: string; stripe: string }
  | { kind: 'bin'; x: number; groundY: number; size: number; colour: string; lid: string };

export type Species = 'cat' | 'dog';
export type Pose = 'standing' | 'sitting';
export type Facing = 'left' | 'right';

export interface AnimalSpec {
  species: Species;
  pose: Pose;
  facing: Facing;
  x: number;
  groundY: number;
  /** Body length in scene units; every body part is drawn relative to it. */
  size: number;
  fur: string;
  furDark: string;
  /** Optional lighter patch (chest / muzzle); shared by both species so it is no cue. */
  patch: string | null;
  eye: string;
  /** Per-animal shape jitter factors around 1, so no two animals are identical. */
  earScale: number;
  tailScale: number;
  bodyScale: number;
  headScale: number;
  /** Dogs only. */
  snoutScale: number;
  collar: string | null;
}

export interface LightingSpec {
  /** Multiplier on pixel values after contrast. */
  brightness: number;
  /** Stretch around mid-grey. */
  contrast: number;
  /** Per-channel white-balance gains. */
  tint: [number, number, number];
  /** Directional light: angle of the bright side and overlay opacities. */
  angleDeg: number;
  highlight: number;
  shadow: number;
}

export interface SceneSpec {
  label: PetParkLabel;
  background: BackgroundSpec;
  props: PropSpec[];
  animal: AnimalSpec | null;
  lighting: LightingSpec;
  /** Standard deviation of the additive sensor noise, in 8-bit pixel units. */
  noiseSigma: number;
  /** Seed for the per-render pixel noise. */
  noiseSeed: number;
}
