import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey, type SigningKey } from '@perch/shared';
import { Metadata, MetadataKind, type Root } from '@tufjs/models';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../agent/src/test-support/harness.js';
import { createLogger } from '../logger.js';
import { createKeyFile, readKeyDir, readKeyFile } from './tuf-keys.js';
import { KEPT_VERSIONS, TufRepository, TufRepositoryError, tufRepositoryPaths, type TufRepositoryOptions } from './tuf-repository.js';

type Json = Parameters<typeof Metadata.fromJSON>[1];
const log = createLogger('silent');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const target = (path: string, content = path) => ({ path, length: Buffer.byteLength(content), hashes: { sha256: sha256(Buffer.from(content)) } });

let dataDir: string;
let paths: ReturnType<typeof tufRepositoryPaths>;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'perch-tuf-repo-'));
  paths = tufRepositoryPaths(dataDir);
});
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function openRepo(over: Partial<TufRepositoryOptions> = {}): Promise<TufRepository> {
  const repo = new TufRepository({ ...paths, log, ...over });
  await repo.open();
  return repo;
}

async function read(name: string): Promise<Buffer> {
  return readFile(join(paths.dir, name));
}

async function rootV(version: number): Promise<Metadata<Root>> {
  return Metadata.fromJSON(MetadataKind.Root, JSON.parse((await read(`${version}.root.json`)).toString()) as Json);
}

async function role(name: 'targets' | 'snapshot' | 'timestamp') {
  const json = JSON.parse((await read(`${name}.json`)).toString()) as Json;
  if (name === 'targets') return Metadata.fromJSON(MetadataKind.Targets, json);
  if (name === 'snapshot') return Metadata.fromJSON(MetadataKind.Snapshot, json);
  return Metadata.fromJSON(MetadataKind.Timestamp, json);
}

/** Moves the root keys out of the repository's reach, as production keeps them. */
async function takeRootKeysOffline(): Promise<SigningKey[]> {
  const keys = [...(await readKeyDir(paths.rootKeyDir)).values()];
  await rm(paths.rootKeyDir, { recursive: true, force: true });
  return keys.map((k) => k.key);
}

describe('TUF repository', () => {
  it('creates a signed version 1 of every role, with a desired role, private keys at mode 0600', async () => {
    const repo = await openRepo();
    const root = await rootV(1);
    expect((await read('root.json')).equals(await read('1.root.json'))).toBe(true);
    expect(Object.keys(root.signed.roles).sort()).toEqual(['desired', 'root', 'snapshot', 'targets', 'timestamp']);
    expect(root.signed.consistentSnapshot).toBe(true);
    root.verifyDelegate('root', root);
    for (const name of ['targets', 'snapshot', 'timestamp'] as const) {
      const md = await role(name);
      expect(md.signed.version).toBe(1);
      root.verifyDelegate(name, md);
    }
    // Snapshot and timestamp pin the exact bytes of what they list.
    const snapshot = await role('snapshot');
    const meta = (snapshot.signed.toJSON().meta as Record<string, unknown>)['targets.json'];
    expect(meta).toEqual({ version: 1, length: (await read('targets.json')).length, hashes: { sha256: sha256(await read('targets.json')) } });

    const rootKeys = await readdir(paths.rootKeyDir);
    const onlineKeys = await readdir(paths.keyDir);
    expect(rootKeys).toHaveLength(1);
    expect(onlineKeys.map((n) => n.split('-')[0]).sort()).toEqual(['desired', 'snapshot', 'targets', 'timestamp']);
    for (const f of [...rootKeys.map((n) => join(paths.rootKeyDir, n)), ...onlineKeys.map((n) => join(paths.keyDir, n))]) {
      expect((await stat(f)).mode & 0o777).toBe(0o600);
    }
    const desired = repo.desiredKeys();
    expect(desired.threshold).toBe(1);
    expect(desired.keys.map((k) => k.keyval.public)).toEqual(repo.desiredSigners().map((k) => k.publicKey.keyval.public));

    // Opening again loads what is there and signs nothing new.
    const before = await read('timestamp.json');
    await openRepo();
    expect((await read('timestamp.json')).equals(before)).toBe(true);
  });

  it('adds a target as new targets, snapshot and timestamp versions; refuses what canonical JSON cannot sign', async () => {
    const repo = await openRepo();
    expect(await repo.addTarget({ ...target('models/a.onnx'), custom: { name: 'a', size: 3 } })).toBe(2);
    const targets = await role('targets');
    expect(targets.signed.version).toBe(2);
    expect((targets.signed as { targets: Record<string, { custom: unknown }> }).targets['models/a.onnx']?.custom).toEqual({ name: 'a', size: 3 });
    expect((await role('snapshot')).signed.version).toBe(2);
    expect((await role('timestamp')).signed.version).toBe(2);

    await expect(repo.addTarget({ ...target('models/b.onnx'), custom: { scale: 0.5 } })).rejects.toThrow(/only integers/);
    await expect(repo.addTarget(target('../escape'))).rejects.toThrow(/path/);
    expect(await repo.removeTarget('models/none')).toBeNull();
    expect(await repo.setTargets([target('models/c.onnx')])).toBe(3);
    expect(Object.keys((await role('targets')).signed.toJSON().targets as object)).toEqual(['models/c.onnx']);
    expect((await role('timestamp')).signed.version).toBe(3);
  });

  it('re-signs online roles past half their lifetime, and only those with what lists them', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const repo = await openRepo({ now: () => new Date(now) });
    expect(await repo.refreshExpiring()).toEqual([]);
    now += 13 * 3_600_000; // timestamp (1 day) is past half its life
    expect(await repo.refreshExpiring()).toEqual(['timestamp']);
    expect((await role('timestamp')).signed.expires).toBe('2030-01-02T13:00:00Z');
    now += 4 * 86_400_000; // snapshot (7 days) too
    expect(await repo.refreshExpiring()).toEqual(['snapshot', 'timestamp']);
    now += 50 * 86_400_000; // targets (90 days) too
    expect(await repo.refreshExpiring()).toEqual(['targets', 'snapshot', 'timestamp']);
    expect((await role('targets')).signed.version).toBe(2);
    expect((await role('timestamp')).signed.version).toBe(4);
  });

  it('keeps the last versions of targets and snapshot under versioned names (consistent snapshots)', async () => {
    const repo = await openRepo();
    expect((await rootV(1)).signed.consistentSnapshot).toBe(true);
    for (let i = 0; i < KEPT_VERSIONS + 3; i++) await repo.addTarget(target(`models/m${i}.onnx`));
    const latest = KEPT_VERSIONS + 4;
    expect((await role('targets')).signed.version).toBe(latest);
    expect((await read(`${latest}.targets.json`)).equals(await read('targets.json'))).toBe(true);
    expect((await read(`${latest}.snapshot.json`)).equals(await read('snapshot.json'))).toBe(true);
    const kept = (await readdir(paths.dir)).filter((n) => /^\d+\.targets\.json$/.test(n)).map((n) => Number(n.split('.')[0]));
    expect(kept.sort((a, b) => a - b)).toEqual(Array.from({ length: KEPT_VERSIONS }, (_, i) => latest - KEPT_VERSIONS + 1 + i));
    expect(await repo.readFile('1.targets.json')).toBeNull();
    // A repository from before consistent snapshots gets the versioned copies of what is current when opened.
    await rm(join(paths.dir, `${latest}.snapshot.json`));
    await openRepo();
    expect((await read(`${latest}.snapshot.json`)).equals(await read('snapshot.json'))).toBe(true);
  });

  it('signs a new root before the old one expires when its root keys are at hand, and only warns when they are offline', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const repo = await openRepo({ now: () => new Date(now) });
    now += 300 * 86_400_000; // root (365 days) is in its last quarter
    expect(await repo.refreshExpiring()).toEqual(['root', 'targets', 'snapshot', 'timestamp']);
    const root2 = await rootV(2);
    expect(root2.signed.expires).toBe('2031-10-28T00:00:00Z');
    expect(Object.keys(root2.signed.keys).sort()).toEqual(Object.keys((await rootV(1)).signed.keys).sort());
    (await rootV(1)).verifyDelegate('root', root2);
    expect(await repo.refreshExpiring()).toEqual([]);

    await takeRootKeysOffline();
    const offline = await openRepo({ now: () => new Date(now) });
    now += 300 * 86_400_000;
    expect(await offline.refreshExpiring()).not.toContain('root');
    await expect(read('3.root.json')).rejects.toThrow(/ENOENT/);
  });

  it('runs the re-signing on a timer between start and stop', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const repo = await openRepo({ now: () => new Date(now), checkIntervalMs: 20 });
    now += 13 * 3_600_000;
    repo.start();
    await waitFor('the timer to re-sign the timestamp', async () => (await role('timestamp')).signed.version === 2);
    await repo.stop();
    expect((await role('snapshot')).signed.version).toBe(1);
  });

  it('rotates root only with the old threshold and the new threshold of signatures', async () => {
    const repo = await openRepo();
    const [oldRootKey] = await takeRootKeysOffline();
    const newRootKey = generateSigningKey();

    // Without the old root key nothing is signed or written.
    const refused = await repo.rotateRoot({ signers: [newRootKey], rootKeys: [newRootKey.publicKey] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TufRepositoryError);
    expect((refused as TufRepositoryError).code).toBe('root_signatures_missing');
    await expect(read('2.root.json')).rejects.toThrow();
    // The new root keys must sign as well.
    await expect(repo.rotateRoot({ signers: [oldRootKey!], rootKeys: [newRootKey.publicKey] })).rejects.toThrow(/its own root keys/);

    const v2 = await repo.rotateRoot({ signers: [oldRootKey!, newRootKey], rootKeys: [newRootKey.publicKey] });
    expect(v2.version).toBe(2);
    expect(v2.roles.root).toEqual({ keyids: [newRootKey.keyid], threshold: 1 });
    const [r1, r2] = [await rootV(1), await rootV(2)];
    r1.verifyDelegate('root', r2);
    r2.verifyDelegate('root', r2);

    // Two new keys, threshold 2: both must sign, and v2's key.
    const k3 = [generateSigningKey(), generateSigningKey()];
    await expect(repo.rotateRoot({ signers: [newRootKey, k3[0]!], rootKeys: k3.map((k) => k.publicKey), rootThreshold: 2 })).rejects.toThrow(/needs 2 signature/);
    const v3 = await repo.rotateRoot({ signers: [newRootKey, ...k3], rootKeys: k3.map((k) => k.publicKey), rootThreshold: 2 });
    expect(v3.roles.root?.threshold).toBe(2);
    const r3 = await rootV(3);
    r2.verifyDelegate('root', r3);
    r3.verifyDelegate('root', r3);
    expect(() => r1.verifyDelegate('root', r3)).toThrow();
    expect((await read('root.json')).equals(await read('3.root.json'))).toBe(true);
  });

  it('revokes an online key: new root without it, a fresh key, the role re-signed, the old key file gone', async () => {
    const repo = await openRepo();
    const before = repo.rootSummary();
    const oldTimestampKey = before.roles.timestamp!.keyids[0]!;
    const summary = await repo.revokeKey(oldTimestampKey);
    expect(summary.version).toBe(2);
    const fresh = summary.roles.timestamp!.keyids;
    expect(fresh).toHaveLength(1);
    expect(fresh[0]).not.toBe(oldTimestampKey);
    const r2 = await rootV(2);
    expect(Object.keys(r2.signed.keys)).not.toContain(oldTimestampKey);
    const timestamp = await role('timestamp');
    expect(timestamp.signed.version).toBe(2);
    r2.verifyDelegate('timestamp', timestamp);
    expect([...(await readKeyDir(paths.keyDir)).keys()]).not.toContain(oldTimestampKey);
    // Targets and snapshot keys did not change: not re-signed.
    expect((await role('targets')).signed.version).toBe(1);

    await expect(repo.revokeKey('0'.repeat(64))).rejects.toMatchObject({ code: 'unknown_key' });
    // The only root key cannot be revoked without a replacement.
    await expect(repo.revokeKey(before.roles.root!.keyids[0]!)).rejects.toMatchObject({ code: 'invalid_change' });
  });

  it('rotates an online key with root keys given from files when none are kept online', async () => {
    const repo = await openRepo();
    const [rootKey] = await takeRootKeysOffline();
    await expect(repo.rotateOnlineKey('desired')).rejects.toMatchObject({ code: 'root_signatures_missing' });
    const saved = await createKeyFile(join(dataDir, 'unused.pem'));
    expect((await stat(join(dataDir, 'unused.pem'))).mode & 0o777).toBe(0o600);
    await expect(createKeyFile(join(dataDir, 'unused.pem'))).rejects.toThrow(/never overwritten/);
    expect((await readKeyFile(join(dataDir, 'unused.pem'))).keyid).toBe(saved.keyid);

    const oldDesired = repo.desiredKeys().keys[0]!.keyval.public;
    const summary = await repo.rotateOnlineKey('desired', [rootKey!]);
    expect(summary.version).toBe(2);
    expect(repo.desiredKeys().keys[0]!.keyval.public).not.toBe(oldDesired);
    expect(repo.desiredSigners()[0]!.publicKey.keyval.public).toBe(repo.desiredKeys().keys[0]!.keyval.public);
  });

  it('serves files by their repository names only', async () => {
    const repo = await openRepo();
    expect((await repo.readFile('1.root.json'))?.equals(await read('1.root.json'))).toBe(true);
    expect(await repo.readFile('2.root.json')).toBeNull();
    expect((await repo.readFile('1.snapshot.json'))?.equals(await read('snapshot.json'))).toBe(true);
    expect(await repo.readFile('1.timestamp.json')).toBeNull();
    expect(await repo.readFile('../keys/root.json')).toBeNull();
    expect(await repo.readFile('root.pem')).toBeNull();
    expect(((await repo.currentRoot()).signed as { version: number }).version).toBe(1);
  });

  it('finishes a change a crash cut short: targets written, snapshot and timestamp not', async () => {
    const repo = await openRepo();
    const [snapshot1, timestamp1] = [await read('snapshot.json'), await read('timestamp.json')];
    await repo.addTarget(target('models/a.onnx'));
    await writeFile(join(paths.dir, 'snapshot.json'), snapshot1);
    await writeFile(join(paths.dir, 'timestamp.json'), timestamp1);
    await openRepo();
    const snapshot = await role('snapshot');
    expect(snapshot.signed.version).toBe(2);
    expect((snapshot.signed as { meta: Record<string, { version: number }> }).meta['targets.json']?.version).toBe(2);
    expect((await role('timestamp')).signed.version).toBe(2);

    // root.json behind the latest N.root.json (crash between the two writes) is brought up to it.
    await repo.rotateOnlineKey('targets');
    await rename(join(paths.dir, '1.root.json'), join(paths.dir, 'spare'));
    await writeFile(join(paths.dir, 'root.json'), await read('spare'));
    await rename(join(paths.dir, 'spare'), join(paths.dir, '1.root.json'));
    await openRepo();
    expect((await read('root.json')).equals(await read('2.root.json'))).toBe(true);
  });
});
