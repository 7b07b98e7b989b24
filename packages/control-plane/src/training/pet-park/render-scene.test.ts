import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { generateDataset } from './dataset.js';
import { PET_PARK_LABELS } from './labels.js';
import { createRng } from './prng.js';
import { encodePng, rasterizeScenes, renderScene } from './render-scene.js';
import type { RgbImage } from './rgb-image.js';
import { resizeRgb } from './resize-rgb.js';
import { sampleScene } from './sample-scene.js';

const size = { width: 160, height: 120 };

/** Bounding box and count of pixels whose RGB differs by more than `threshold` in some channel. */
function diffRegion(a: RgbImage, b: RgbImage, threshold: number) {
  let count = 0;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      const p = (y * a.width + x) * 3;
      const d = Math.max(...[0, 1, 2].map((c) => Math.abs((a.data[p + c] ?? 0) - (b.data[p + c] ?? 0))));
      if (d > threshold) {
        count++;
        minX = Math.min(minX, x);
        maxX = Math.max(maxX, x);
        minY = Math.min(minY, y);
        maxY = Math.max(maxY, y);
      }
    }
  }
  return { count, width: maxX - minX + 1, height: maxY - minY + 1 };
}

describe('pet-park renderer', () => {
  it('is deterministic per seed and differs between seeds', async () => {
    const a = await renderScene(sampleScene('cat', createRng(7)), size);
    const b = await renderScene(sampleScene('cat', createRng(7)), size);
    const c = await renderScene(sampleScene('cat', createRng(8)), size);
    expect(a.data.length).toBe(160 * 120 * 3);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
    expect(Buffer.from(a.data).equals(Buffer.from(c.data))).toBe(false);
  });

  it('draws an animal only in animal scenes: same seed gives the same park, the animal is a local difference', async () => {
    for (const seed of [3, 11, 29]) {
      // Sampling forks the park, props and lighting the same way for every label.
      const [empty, cat, dog] = await rasterizeScenes(
        PET_PARK_LABELS.map((label) => sampleScene(label, createRng(seed))),
        size,
      );
      if (!empty || !cat || !dog) throw new Error('missing render');
      for (const animal of [cat, dog]) {
        const d = diffRegion(empty, animal, 24);
        expect(d.count).toBeGreaterThan(150);
        // Local, not a different picture: the changed pixels fit in a box smaller than the frame.
        expect(d.width * d.height).toBeLessThan(160 * 120 * 0.6);
      }
      expect(diffRegion(cat, dog, 24).count).toBeGreaterThan(150);
    }
  });

  it('varies the scene spec: poses, facings and shared fur colours', () => {
    const cats = Array.from({ length: 60 }, (_, i) => sampleScene('cat', createRng(1000 + i)).animal);
    const dogs = Array.from({ length: 60 }, (_, i) => sampleScene('dog', createRng(2000 + i)).animal);
    const poses = new Set(cats.map((a) => `${a?.pose}/${a?.facing}`));
    expect(poses.size).toBe(4);
    expect(cats.every((a) => a?.species === 'cat')).toBe(true);
    expect(dogs.every((a) => a?.species === 'dog')).toBe(true);
    expect(sampleScene('empty', createRng(1)).animal).toBeNull();
    // Colour must not give the class away: both species come in dark and in light fur.
    const luma = (hex: string | undefined) => {
      const v = parseInt((hex ?? '#000000').slice(1), 16);
      return 0.299 * (v >> 16) + 0.587 * ((v >> 8) & 255) + 0.114 * (v & 255);
    };
    for (const animals of [cats, dogs]) {
      expect(animals.some((a) => luma(a?.fur) < 60)).toBe(true);
      expect(animals.some((a) => luma(a?.fur) > 180)).toBe(true);
    }
  });

  it('encodes PNG at the rendered size', async () => {
    const image = await renderScene(sampleScene('dog', createRng(5)), { width: 96, height: 72 });
    const meta = await sharp(await encodePng(image)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 96, 72]);
  });

  it('rejects bad sizes', async () => {
    await expect(renderScene(sampleScene('dog', createRng(5)), { width: 0, height: 72 })).rejects.toThrow(/width/);
    await expect(renderScene(sampleScene('dog', createRng(5)), { width: 64, height: 6.5 })).rejects.toThrow(/height/);
  });
});

describe('resizeRgb', () => {
  it('keeps flat colour flat and matches a sharp fill-resize closely', async () => {
    const flat: RgbImage = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 3).fill(77) };
    expect(resizeRgb(flat, 16, 16).data.every((v) => v === 77)).toBe(true);

    const scene = await renderScene(sampleScene('cat', createRng(42)), size);
    const ours = resizeRgb(scene, 64, 64);
    const theirs = await sharp(scene.data, { raw: { width: 160, height: 120, channels: 3 } })
      .resize(64, 64, { fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer();
    let sum = 0;
    ours.data.forEach((v, i) => (sum += Math.abs(v - (theirs[i] ?? 0))));
    expect(sum / ours.data.length).toBeLessThan(4);
  });
});

describe('generateDataset', () => {
  it('returns balanced, labelled samples at the model size, reproducibly', async () => {
    const a = await generateDataset({ count: 12, seed: 9, width: 64, height: 48 });
    const b = await generateDataset({ count: 12, seed: 9, width: 64, height: 48 });
    expect(a.map((s) => s.label)).toEqual(Array.from({ length: 12 }, (_, i) => PET_PARK_LABELS[i % 3]));
    expect(a.every((s) => s.image.width === 64 && s.image.height === 48 && s.image.data.length === 64 * 48 * 3)).toBe(true);
    expect(a.every((s) => PET_PARK_LABELS[s.labelIndex] === s.label)).toBe(true);
    expect(a.every((s, i) => Buffer.from(s.image.data).equals(Buffer.from(b[i]?.image.data ?? [])))).toBe(true);
  });

  it('validates options', async () => {
    await expect(generateDataset({ count: 0, seed: 1, width: 64, height: 64 })).rejects.toThrow(/count/);
    await expect(generateDataset({ count: 3, seed: -1, width: 64, height: 64 })).rejects.toThrow(/seed/);
  });
});
