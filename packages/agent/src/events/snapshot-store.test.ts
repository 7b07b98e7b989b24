import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir } from '../test-support/harness.js';
import { SnapshotStore } from './snapshot-store.js';

/** A 16x12 rgb24 frame, left half red, right half blue. */
function frame(): Uint8Array {
  const f = new Uint8Array(16 * 12 * 3);
  for (let y = 0; y < 12; y++) for (let x = 0; x < 16; x++) f.set(x < 8 ? [255, 0, 0] : [0, 0, 255], (y * 16 + x) * 3);
  return f;
}

describe('snapshot store', () => {
  let dir: { path: string; remove(): Promise<void> };
  const log = new CapturedLog().logger;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(() => dir.remove());

  it('writes real JPEG files of the frame', async () => {
    const store = new SnapshotStore({ dir: join(dir.path, 'snaps'), maxFiles: 10, quality: 90 }, log);
    await store.start();
    const name = await store.write('front-0-new.jpg', frame(), 16, 12);
    const path = store.path(name);
    expect(path).toBe(join(dir.path, 'snaps', 'front-0-new.jpg'));
    const meta = await sharp(path ?? '').metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 16, height: 12, channels: 3 });
    // The picture survives the round trip: red on the left, blue on the right.
    const { data } = await sharp(path ?? '').raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => [...data.subarray((y * 16 + x) * 3, (y * 16 + x) * 3 + 3)];
    expect(px(2, 6)[0]).toBeGreaterThan(200);
    expect(px(13, 6)[2]).toBeGreaterThan(200);
    expect(await readdir(join(dir.path, 'snaps'))).toEqual(['front-0-new.jpg']);
  });

  it('keeps at most maxFiles, deleting the oldest, also across a restart', async () => {
    const snaps = join(dir.path, 'snaps');
    const a = new SnapshotStore({ dir: snaps, maxFiles: 3, quality: 50 }, log);
    await a.start();
    for (let i = 0; i < 5; i++) await a.write(`cam-${i}-new.jpg`, frame(), 16, 12);
    expect((await readdir(snaps)).sort()).toEqual(['cam-2-new.jpg', 'cam-3-new.jpg', 'cam-4-new.jpg']);
    expect(a.path('cam-1-new.jpg')).toBeNull();

    // A restart with a smaller bound trims what is there, oldest first; files that are not snapshots stay.
    await writeFile(join(snaps, 'notes.txt'), 'keep me');
    const b = new SnapshotStore({ dir: snaps, maxFiles: 2, quality: 50 }, log);
    await b.start();
    expect((await readdir(snaps)).sort()).toEqual(['cam-3-new.jpg', 'cam-4-new.jpg', 'notes.txt']);
    await b.write('cam-5-new.jpg', frame(), 16, 12);
    expect((await readdir(snaps)).sort()).toEqual(['cam-4-new.jpg', 'cam-5-new.jpg', 'notes.txt']);
  });

  it('refuses names that could leave its folder, and frames of the wrong size', async () => {
    const store = new SnapshotStore({ dir: dir.path, maxFiles: 3, quality: 50 }, log);
    await store.start();
    await expect(store.write('../escape.jpg', frame(), 16, 12)).rejects.toThrow(/bad snapshot name/);
    await expect(store.write('ok.jpg', frame(), 15, 12)).rejects.toThrow(/needs 540/);
    expect(store.path('../escape.jpg')).toBeNull();
    expect(store.count).toBe(0);
  });
});
