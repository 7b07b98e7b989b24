import { createHash } from 'node:crypto';
import { readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { diskFullReason, isDiskFull } from '../storage/disk-full.js';
import { tempDir } from '../test-support/harness.js';
import { fillUp, mountSmallFilesystem, type SmallFilesystem } from '../test-support/small-filesystem.js';
import { ModelStore, ModelStoreError } from './model-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('model store', () => {
  let dir: { path: string; remove(): Promise<void> };
  let store: ModelStore;
  beforeEach(async () => {
    dir = await tempDir();
    store = new ModelStore(dir.path);
    await store.init();
  });
  afterEach(() => dir.remove());

  it('installs a download under its sha256 with its target document, and verifies it', async () => {
    const bytes = Buffer.from('model bytes');
    const hash = sha(bytes);
    await writeFile(store.partPath(hash), bytes);
    expect(await store.has(hash)).toBe(false);
    const path = await store.install(store.partPath(hash), hash, { signed: { any: 'thing' }, signatures: [] });
    expect(path).toBe(join(dir.path, 'models', `${hash}.onnx`));
    expect(await store.has(hash)).toBe(true);
    expect(await store.readTarget(hash)).toEqual({ signed: { any: 'thing' }, signatures: [] });
    expect(await store.verify(hash)).toBe(path);
    expect(await readdir(store.downloadsDir)).toEqual([]);
  });

  it('notices a stored model that no longer matches its hash', async () => {
    const bytes = Buffer.from('model bytes');
    const hash = sha(bytes);
    await writeFile(store.partPath(hash), bytes);
    await store.install(store.partPath(hash), hash, {});
    await writeFile(store.modelPath(hash), Buffer.from('model bytez'));
    await expect(store.verify(hash)).rejects.toThrow(ModelStoreError);
    await expect(store.verify('0'.repeat(64))).rejects.toThrow(/unreadable/);
  });

  it('keeps the active pointer atomically and refuses a malformed one', async () => {
    expect(await store.readActive()).toBeUndefined();
    await store.writeActive({ acceptedGeneration: 3, active: 'a'.repeat(64), knownGood: 'b'.repeat(64), trial: { generation: 3, smokeMs: 0.5 } });
    expect(await store.readActive()).toEqual({ acceptedGeneration: 3, active: 'a'.repeat(64), knownGood: 'b'.repeat(64), trial: { generation: 3, smokeMs: 0.5 } });
    expect((await readdir(dir.path)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await writeFile(join(dir.path, 'active.json'), '{"acceptedGeneration": -1, "active": null}');
    await expect(store.readActive()).rejects.toThrow(/acceptedGeneration/);
    await expect(store.writeActive({ acceptedGeneration: 1, active: 'nope' })).rejects.toThrow();
    expect(await readFile(join(dir.path, 'active.json'), 'utf8')).toContain('-1');
  });

  it('bounds the cache: keeps the models asked for and the newest others, drops the rest and stale part files', async () => {
    const installed: string[] = [];
    for (let i = 0; i < 5; i++) {
      const bytes = Buffer.from(`model ${i}`);
      const hash = sha(bytes);
      await writeFile(store.partPath(hash), bytes);
      await store.install(store.partPath(hash), hash, { signed: { i }, signatures: [] });
      // Installed a minute apart, oldest first.
      const t = new Date(Date.now() - (5 - i) * 60_000);
      await utimes(store.modelPath(hash), t, t);
      installed.push(hash);
    }
    const [m0, m1, m2, m3, m4] = installed as [string, string, string, string, string];
    // A resumable download of a model that is still wanted, and one of a superseded target.
    const wanted = 'a'.repeat(64);
    const stale = 'b'.repeat(64);
    for (const h of [wanted, stale]) {
      await writeFile(store.partPath(h), 'part');
      await writeFile(store.journalPath(h), 'journal');
    }
    // Active m1 and the one it replaced, m0 (the oldest): kept whatever their age; one more room for the newest, m4.
    const removed = await store.collectGarbage(new Set([m1, m0, wanted]), 3);
    expect(removed.sort()).toEqual([m2, m3].sort());
    for (const h of [m0, m1, m4]) expect(await store.has(h)).toBe(true);
    for (const h of [m2, m3]) expect(await store.has(h)).toBe(false);
    expect((await readdir(store.downloadsDir)).sort()).toEqual([`${wanted}.part`, `${wanted}.part.journal`]);
    // Nothing is deleted twice, and a smaller bound than the kept set keeps the kept set.
    expect(await store.collectGarbage(new Set([m1, m0]), 1)).toEqual([m4]);
    expect(await store.has(m1)).toBe(true);
  });

  it('reads a pointer written before health windows: its active model counts as known-good', async () => {
    await writeFile(join(dir.path, 'active.json'), JSON.stringify({ acceptedGeneration: 2, active: 'c'.repeat(64) }));
    expect(await store.readActive()).toEqual({ acceptedGeneration: 2, active: 'c'.repeat(64), knownGood: 'c'.repeat(64) });
    await writeFile(join(dir.path, 'active.json'), JSON.stringify({ acceptedGeneration: 2, active: null }));
    expect(await store.readActive()).toEqual({ acceptedGeneration: 2, active: null, knownGood: null });
  });

  it('at start, removes temp files of atomic writes a crash cut off, and nothing else', async () => {
    const stale = [join(dir.path, '.active.json.0a1b2c3d.tmp'), join(store.modelsDir, `.${'d'.repeat(64)}.target.json.deadbeef.tmp`)];
    const kept = [join(dir.path, '.telemetry-seq.json.0a1b2c3d.tmp'), join(dir.path, 'active.json')];
    for (const f of [...stale, ...kept]) await writeFile(f, '{');
    await new ModelStore(dir.path).init();
    expect(await readdir(dir.path)).toEqual(expect.arrayContaining(['.telemetry-seq.json.0a1b2c3d.tmp', 'active.json']));
    expect(await readdir(dir.path)).not.toContain('.active.json.0a1b2c3d.tmp');
    expect(await readdir(store.modelsDir)).toEqual([]);
  });
});

describe('model store on a full disk (a real ENOSPC from a small tmpfs)', () => {
  let small: SmallFilesystem = { ok: false, skip: 'not mounted' };
  beforeAll(async () => {
    small = await mountSmallFilesystem(512 * 1024);
  });
  afterAll(async () => {
    if (small.ok) await small.unmount();
  });

  it('an install that hits ENOSPC throws a disk-full error, leaves no temp file, keeps the part file, and succeeds once there is room', async (ctx) => {
    if (!small.ok) return ctx.skip(small.skip);
    const store = new ModelStore(join(small.path, 'data'));
    await store.init();
    const bytes = Buffer.alloc(64 * 1024, 7);
    const hash = sha(bytes);
    await writeFile(store.partPath(hash), bytes);
    const ballast = await fillUp(small, 0);
    // The target document is written first, and there is no room for it.
    const err: unknown = await store.install(store.partPath(hash), hash, { signed: { big: 'x'.repeat(8192) }, signatures: [] }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ENOSPC' });
    expect(isDiskFull(err)).toBe(true);
    expect(diskFullReason(err)).toMatch(/^disk full: ENOSPC: no space left on device/);
    expect(await store.has(hash)).toBe(false);
    expect(await readdir(store.modelsDir)).toEqual([]);
    expect(await readdir(store.downloadsDir)).toEqual([`${hash}.part`]);

    await rm(ballast);
    await store.install(store.partPath(hash), hash, { signed: { big: 'x'.repeat(8192) }, signatures: [] });
    expect(await store.verify(hash)).toBe(store.modelPath(hash));
  });
});
