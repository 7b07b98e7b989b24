/**
 * Composes scene SVG: one scene per document, or many scenes tiled into one atlas
 * document. Rasterising an atlas costs about the same per call as a single scene, so
 * batching amortises the renderer's fixed per-document overhead.
 */
import { animalSvg } from './animal-svg.js';
import { backgroundDefs, backgroundSvg, lightingDefs, lightingOverlay, propSvg } from './park-svg.js';
import { SCENE_VIEW_HEIGHT, SCENE_VIEW_WIDTH, type SceneSpec } from './scene-spec.js';

/**
 * The scene's content in its 160x120 view space. `idPrefix` keeps gradient ids
 * unique when several scenes share one document.
 */
function sceneContent(scene: SceneSpec, idPrefix: string): string {
  // Painter's algorithm: whatever stands further from the camera (smaller groundY) is drawn first.
  const standing: { groundY: number; svg: string }[] = scene.props.map((prop) => ({
    groundY: prop.groundY,
    svg: propSvg(prop),
  }));
  if (scene.animal) standing.push({ groundY: scene.animal.groundY, svg: animalSvg(scene.animal) });
  standing.sort((a, b) => a.groundY - b.groundY);
  return (
    `<defs>${backgroundDefs(scene.background, idPrefix)}${lightingDefs(scene.lighting, idPrefix)}</defs>` +
    backgroundSvg(scene.background, idPrefix) +
    standing.map((s) => s.svg).join('') +
    lightingOverlay(idPrefix)
  );
}

/** A nested viewport; "none" stretches the 4:3 scene to any size, like a camera scaler would. */
function viewport(x: number, y: number, width: number, height: number, content: string): string {
  return (
    `<svg x="${x}" y="${y}" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${SCENE_VIEW_WIDTH} ${SCENE_VIEW_HEIGHT}" preserveAspectRatio="none">${content}</svg>`
  );
}

export function sceneToSvg(scene: SceneSpec, width: number, height: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${viewport(0, 0, width, height, sceneContent(scene, 's'))}</svg>`;
}

/** Tiles scenes left-to-right, top-to-bottom into `columns` columns of tileWidth x tileHeight. */
export function scenesToAtlasSvg(scenes: readonly SceneSpec[], tileWidth: number, tileHeight: number, columns: number): string {
  const rows = Math.ceil(scenes.length / columns);
  const tiles = scenes.map((scene, i) =>
    viewport((i % columns) * tileWidth, Math.floor(i / columns) * tileHeight, tileWidth, tileHeight, sceneContent(scene, `s${i}`)),
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${columns * tileWidth}" height="${rows * tileHeight}">${tiles.join('')}</svg>`;
}
