/**
 * SVG for the park itself: sky, distant trees, grass, path, fence, props and the
 * directional-light overlay. Everything here is shared by all three classes.
 */
import { SCENE_VIEW_HEIGHT, SCENE_VIEW_WIDTH, type BackgroundSpec, type LightingSpec, type PropSpec } from './scene-spec.js';
import { num } from './svg-number.js';

export function backgroundDefs(bg: BackgroundSpec, idPrefix: string): string {
  return (
    `<linearGradient id="${idPrefix}sky" x1="0" y1="0" x2="0" y2="1">` +
    `<stop offset="0" stop-color="${bg.skyTop}"/><stop offset="1" stop-color="${bg.skyBottom}"/></linearGradient>` +
    `<linearGradient id="${idPrefix}grass" x1="0" y1="0" x2="0" y2="1">` +
    `<stop offset="0" stop-color="${bg.grassFar}"/><stop offset="1" stop-color="${bg.grassNear}"/></linearGradient>`
  );
}

export function backgroundSvg(bg: BackgroundSpec, idPrefix: string): string {
  const h = bg.horizonY;
  const parts: string[] = [
    `<rect x="0" y="0" width="${SCENE_VIEW_WIDTH}" height="${num(h + 2)}" fill="url(#${idPrefix}sky)"/>`,
  ];
  for (const bump of bg.treelineBumps) {
    parts.push(`<ellipse cx="${num(bump.x)}" cy="${num(h)}" rx="${num(bump.radius * 1.4)}" ry="${num(bump.radius * 0.7)}" fill="${bg.treeline}"/>`);
  }
  parts.push(`<rect x="0" y="${num(h)}" width="${SCENE_VIEW_WIDTH}" height="${num(SCENE_VIEW_HEIGHT - h)}" fill="url(#${idPrefix}grass)"/>`);
  if (bg.path) {
    const p = bg.path;
    const far = p.farWidth / 2;
    const near = p.nearWidth / 2;
    parts.push(
      `<path d="M${num(p.farX - far)} ${num(h)} L${num(p.farX + far)} ${num(h)} L${num(p.nearX + near)} ${SCENE_VIEW_HEIGHT} L${num(p.nearX - near)} ${SCENE_VIEW_HEIGHT}Z" ` +
        `fill="${p.colour}" stroke="${p.edge}" stroke-width="1"/>`,
    );
  }
  for (const tree of bg.trees) {
    const r = tree.crownRadius;
    parts.push(
      `<rect x="${num(tree.x - r * 0.15)}" y="${num(tree.y - r * 1.6)}" width="${num(r * 0.3)}" height="${num(r * 1.6)}" fill="${tree.trunk}"/>`,
      `<circle cx="${num(tree.x)}" cy="${num(tree.y - r * 1.8)}" r="${num(r)}" fill="${tree.crown}"/>`,
    );
  }
  if (bg.fence) {
    const f = bg.fence;
    const rails = [f.topY + f.height * 0.2, f.topY + f.height * 0.65];
    for (const y of rails) {
      parts.push(`<rect x="0" y="${num(y)}" width="${SCENE_VIEW_WIDTH}" height="${num(f.height * 0.14)}" fill="${f.colour}"/>`);
    }
    // Post phase derived from the fence's own numbers, so it varies per scene without another spec field.
    for (let x = (f.topY * 7) % f.postSpacing; x < SCENE_VIEW_WIDTH; x += f.postSpacing) {
      parts.push(`<rect x="${num(x)}" y="${num(f.topY)}" width="${num(f.height * 0.16)}" height="${num(f.height)}" fill="${f.colour}"/>`);
    }
  }
  for (const tuft of bg.tufts) {
    const s = tuft.size;
    parts.push(
      `<path d="M${num(tuft.x - s)} ${num(tuft.y)} L${num(tuft.x - s * 0.3)} ${num(tuft.y - s * 1.5)} L${num(tuft.x)} ${num(tuft.y)} ` +
        `L${num(tuft.x + s * 0.4)} ${num(tuft.y - s * 1.2)} L${num(tuft.x + s)} ${num(tuft.y)}Z" fill="${tuft.colour}"/>`,
    );
  }
  return parts.join('');
}

/** Soft contact shadow so objects sit on the grass instead of floating. */
export function groundShadow(x: number, groundY: number, halfWidth: number): string {
  return `<ellipse cx="${num(x)}" cy="${num(groundY)}" rx="${num(halfWidth)}" ry="${num(halfWidth * 0.16)}" fill="#000" fill-opacity="0.25"/>`;
}

export function propSvg(prop: PropSpec): string {
  const { x, groundY: g, size: s } = prop;
  switch (prop.kind) {
    case 'bench': {
      const left = x - s / 2;
      return (
        groundShadow(x, g, s * 0.55) +
        `<rect x="${num(left + s * 0.06)}" y="${num(g - s * 0.36)}" width="${num(s * 0.05)}" height="${num(s * 0.36)}" fill="${prop.frame}"/>` +
        `<rect x="${num(left + s * 0.89)}" y="${num(g - s * 0.36)}" width="${num(s * 0.05)}" height="${num(s * 0.36)}" fill="${prop.frame}"/>` +
        `<rect x="${num(left)}" y="${num(g - s * 0.38)}" width="${num(s)}" height="${num(s * 0.07)}" fill="${prop.wood}"/>` +
        `<rect x="${num(left)}" y="${num(g - s * 0.62)}" width="${num(s)}" height="${num(s * 0.07)}" fill="${prop.wood}"/>` +
        `<rect x="${num(left)}" y="${num(g - s * 0.51)}" width="${num(s)}" height="${num(s * 0.07)}" fill="${prop.wood}"/>`
      );
    }
    case 'ball': {
      const r = s / 2;
      return (
        groundShadow(x, g, r * 1.1) +
        `<circle cx="${num(x)}" cy="${num(g - r)}" r="${num(r)}" fill="${prop.colour}"/>` +
        `<path d="M${num(x - r)} ${num(g - r)} Q${num(x)} ${num(g - r * 1.6)} ${num(x + r)} ${num(g - r)}" fill="none" stroke="${prop.stripe}" stroke-width="${num(r * 0.25)}"/>`
      );
    }
    case 'bin': {
      const w = s * 0.7;
      return (
        groundShadow(x, g, w * 0.7) +
        `<rect x="${num(x - w / 2)}" y="${num(g - s)}" width="${num(w)}" height="${num(s)}" fill="${prop.colour}"/>` +
        `<rect x="${num(x - w * 0.58)}" y="${num(g - s * 1.08)}" width="${num(w * 1.16)}" height="${num(s * 0.12)}" fill="${prop.lid}"/>`
      );
    }
  }
}

/** Directional light: a bright side fading to a darker side across the whole frame. */
export function lightingDefs(light: LightingSpec, idPrefix: string): string {
  const rad = (light.angleDeg * Math.PI) / 180;
  const dx = Math.cos(rad) / 2;
  const dy = Math.sin(rad) / 2;
  return (
    `<linearGradient id="${idPrefix}light" x1="${num(0.5 + dx)}" y1="${num(0.5 + dy)}" x2="${num(0.5 - dx)}" y2="${num(0.5 - dy)}">` +
    `<stop offset="0" stop-color="#fff" stop-opacity="${num(light.highlight)}"/>` +
    `<stop offset="0.5" stop-color="#808080" stop-opacity="0"/>` +
    `<stop offset="1" stop-color="#000" stop-opacity="${num(light.shadow)}"/></linearGradient>`
  );
}

export function lightingOverlay(idPrefix: string): string {
  return `<rect x="0" y="0" width="${SCENE_VIEW_WIDTH}" height="${SCENE_VIEW_HEIGHT}" fill="url(#${idPrefix}light)"/>`;
}
