/**
 * Rasterises scenes with sharp, then applies camera effects (exposure, contrast,
 * white balance, sensor noise) to the raw pixels so they vary independently of the
 * drawing itself.
 */
import { loadSharp } from '../../native-libraries.js';
import { resizeRgb } from './resize-rgb.js';
import type { RgbImage } from './rgb-image.js';
import type { SceneSpec } from './scene-spec.js';
import { scenesToAtlasSvg } from './scene-svg.js';
import { fillNoise } from './sensor-noise.js';

export interface RenderSize {
  width: number;
  height: number;
}

export interface RenderOptions {
  /**
   * Resolution the SVG is rasterised at before being stretched to the output size;
   * defaults to the output size. The dataset rasterises at 4:3 camera aspect and
   * stretches to the square model input, as ffmpeg's `scale=W:H` does on the camera side.
   */
  rasterSize?: RenderSize;
}

const MAX_RENDER_SIDE = 4096;
/** Atlas limits: enough scenes per call to amortise the renderer's overhead, bounded memory. */
const MAX_ATLAS_TILES = 36;
const MAX_ATLAS_PIXELS = 4_000_000;

export function assertRenderSize(size: RenderSize, what: string): void {
  for (const [key, value] of [['width', size.width], ['height', size.height]] as const) {
    if (!Number.isInteger(value) || value < 8 || value > MAX_RENDER_SIDE) {
      throw new Error(`${what}: ${key} must be an integer in [8, ${MAX_RENDER_SIDE}], got ${String(value)}`);
    }
  }
}

/**
 * Clean rasterisations (no camera effects) of `scenes` at `size`, drawn in atlas
 * batches of several scenes per sharp call.
 */
export async function rasterizeScenes(scenes: readonly SceneSpec[], size: RenderSize, options: RenderOptions = {}): Promise<RgbImage[]> {
  assertRenderSize(size, 'rasterizeScenes');
  const raster = options.rasterSize ?? size;
  assertRenderSize(raster, 'rasterizeScenes rasterSize');
  const perAtlas = Math.max(1, Math.min(MAX_ATLAS_TILES, Math.floor(MAX_ATLAS_PIXELS / (raster.width * raster.height))));
  const columns = Math.ceil(Math.sqrt(perAtlas));
  const out: RgbImage[] = [];
  for (let start = 0; start < scenes.length; start += perAtlas) {
    const batch = scenes.slice(start, start + perAtlas);
    const sharp = await loadSharp();
    const { data, info } = await sharp(Buffer.from(scenesToAtlasSvg(batch, raster.width, raster.height, columns)))
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`rasterizeScenes: expected 3 channels, got ${info.channels}`);
    const atlas: RgbImage = { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
    batch.forEach((_, i) => {
      const region = { left: (i % columns) * raster.width, top: Math.floor(i / columns) * raster.height, ...raster };
      out.push(resizeRgb(atlas, size.width, size.height, region));
    });
  }
  return out;
}

/** Returns a copy of `image` with the scene's lighting and sensor noise applied. */
export function applyCameraEffects(image: RgbImage, scene: SceneSpec, noiseSeed = scene.noiseSeed): RgbImage {
  const { brightness, contrast, tint } = scene.lighting;
  const src = image.data;
  const out = new Uint8Array(src.length);
  const noise = new Float32Array(src.length);
  fillNoise(noise, scene.noiseSigma, noiseSeed);
  // ((v - 128) * contrast + 128) * brightness * tint, folded into one gain/offset per channel.
  const gains = tint.map((t) => contrast * brightness * t);
  const offsets = tint.map((t) => 128 * (1 - contrast) * brightness * t);
  for (let c = 0; c < 3; c++) {
    const gain = gains[c] ?? 1;
    const offset = offsets[c] ?? 0;
    for (let i = c; i < src.length; i += 3) {
      const v = (src[i] ?? 0) * gain + offset + (noise[i] ?? 0);
      out[i] = v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5;
    }
  }
  return { width: image.width, height: image.height, data: out };
}

/** Renders scenes at `size` with camera effects. */
export async function renderScenes(scenes: readonly SceneSpec[], size: RenderSize, options: RenderOptions = {}): Promise<RgbImage[]> {
  const clean = await rasterizeScenes(scenes, size, options);
  return clean.map((image, i) => {
    const scene = scenes[i];
    if (!scene) throw new Error(`renderScenes: scene ${i} missing`);
    return applyCameraEffects(image, scene);
  });
}

export async function renderScene(scene: SceneSpec, size: RenderSize, options: RenderOptions = {}): Promise<RgbImage> {
  const [image] = await renderScenes([scene], size, options);
  if (!image) throw new Error('renderScene: nothing rendered');
  return image;
}

export async function encodePng(image: RgbImage): Promise<Buffer> {
  const sharp = await loadSharp();
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}
