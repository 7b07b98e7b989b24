import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allDevicesFilter, deviceTopic, encodeJson, generateSigningKey, signEnvelope, type SigningKey } from '@perch/shared';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../../../agent/src/mqtt/connection.js';
import { MessageDispatcher } from '../../../agent/src/mqtt/dispatcher.js';
import { CapturedLog, waitFor } from '../../../agent/src/test-support/harness.js';
import { MqttMetadataFetcher } from '../../../agent/src/trust/mqtt-metadata-fetcher.js';
import { TrustedMetadata, TrustError, type TufLimits } from '../../../agent/src/trust/trusted-metadata.js';
import { EmbeddedBroker } from '../broker/embedded-broker.js';
import { ControlPlaneBus } from '../bus/control-plane-bus.js';
import { DeviceMessageDispatcher } from '../bus/device-message-dispatcher.js';
import { DeviceIdentityService } from '../identity/device-identity-service.js';
import { createLogger } from '../logger.js';
import { openDatabase } from '../store/database.js';
import { DeviceStore } from '../store/device-store.js';
import { MetadataServer } from './metadata-server.js';
import { readKeyDir } from './tuf-keys.js';
import { TufRepository, tufRepositoryPaths, type OnlineRole } from './tuf-repository.js';

/*
 * The whole path with real parts: the control plane's TUF repository, its
 * metadata server behind the embedded broker, and the agent's fetcher and
 * trusted metadata on a real MQTT connection. An attacker on the path is a
 * set of forged files the server hands out instead of the repository's.
 */

const DEVICE = 'gate-7';
const DAY = 86_400_000;
const silent = createLogger('silent');

type Doc = { signed: Record<string, unknown> & { version: number }; signatures: unknown[] };
const parse = (b: Buffer | null): Doc => {
  if (!b) throw new Error('no such file');
  return JSON.parse(b.toString('utf8')) as Doc;
};
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');
/** Metadata as an attacker with these keys would sign it (TUF's envelope and canonical JSON). */
const forge = (signed: unknown, keys: SigningKey[]) => bytes(signEnvelope(signed, keys));
const target = { path: 'models/pet-park.onnx', length: 1234, hashes: { sha256: 'ab'.repeat(32) }, custom: { name: 'pet-park', version: '1.0.0' } };

interface Rig {
  repo: TufRepository;
  paths: ReturnType<typeof tufRepositoryPaths>;
  /** what an attacker on the path serves instead of the repository's file; null is a 404 */
  forged: Map<string, Buffer | null>;
  /** run (not awaited) just before the repository's file by that name is read for a device */
  beforeServing: Map<string, () => Promise<void>>;
  /** names of the files devices asked for, in order */
  served: string[];
  rootFile: string;
  deviceDir: string;
  deviceLog: CapturedLog;
  open(limits?: Partial<TufLimits>): Promise<TrustedMetadata>;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup.length = 0;
});

/** Waits until the control plane answers metadata requests, so a device's first request cannot beat its subscription. */
async function controlPlaneReady(url: string, password: string): Promise<void> {
  const probe = await mqtt.connectAsync(url, { clientId: 'probe-1', username: 'probe-1', password, reconnectPeriod: 0 });
  try {
    await probe.subscribeAsync(deviceTopic('probe-1', 'metadata/response'), { qos: 1 });
    let answered = false;
    probe.on('message', () => (answered = true));
    await waitFor('the control plane to answer', async () => {
      await probe.publishAsync(deviceTopic('probe-1', 'metadata/request'), encodeJson({ requestId: 'probe', name: 'root.json' }), { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
      return answered;
    });
  } finally {
    await probe.endAsync();
  }
}

async function startRig(opts: { now?: () => Date } = {}): Promise<Rig> {
  const dataDir = await mkdtemp(join(tmpdir(), 'perch-tuf-cp-'));
  const deviceDir = await mkdtemp(join(tmpdir(), 'perch-tuf-dev-'));
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }), () => rm(deviceDir, { recursive: true, force: true }));
  const paths = tufRepositoryPaths(dataDir);
  const repo = new TufRepository({ ...paths, log: silent, ...(opts.now ? { now: opts.now } : {}) });
  await repo.open();

  const db = openDatabase(join(dataDir, 'perch.db'));
  cleanup.push(async () => {
    db.close();
  });
  const identity = new DeviceIdentityService(db, new DeviceStore(db), silent);
  const devicePassword = identity.provision(DEVICE).password;
  const probePassword = identity.provision('probe-1').password;
  const cpPassword = randomBytes(12).toString('hex');
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, controlPlaneUsername: 'cp', controlPlanePassword: cpPassword, devices: identity }, silent);
  await broker.start();
  cleanup.push(() => broker.stop());
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const bus = new ControlPlaneBus({ url, username: 'cp', password: cpPassword, clientId: `cp-${randomBytes(3).toString('hex')}` }, silent);
  const forged = new Map<string, Buffer | null>();
  const beforeServing = new Map<string, () => Promise<void>>();
  const served: string[] = [];
  const source = {
    readFile: async (name: string) => {
      served.push(name);
      // An attacker forges whichever version of targets or snapshot the device asks for (consistent snapshots).
      const plain = name.replace(/^\d+\.(targets|snapshot)\.json$/, '$1.json');
      return forged.has(plain) ? (forged.get(plain) ?? null) : (beforeServing.get(name)?.(), repo.readFile(name));
    },
  };
  const dispatcher = new DeviceMessageDispatcher(silent).register(new MetadataServer(source, bus, silent).handler());
  bus.onMessage((topic, payload) => dispatcher.dispatch(topic, payload));
  await bus.start([allDevicesFilter('metadata/request')]);
  cleanup.push(() => bus.stop());
  await controlPlaneReady(url, probePassword);

  const deviceLog = new CapturedLog('debug');
  const conn = new MqttConnection(
    { deviceId: DEVICE, url, username: DEVICE, password: devicePassword, connectTimeoutMs: 5000, keepaliveSeconds: 30, reconnect: { minMs: 50, maxMs: 500 } },
    deviceLog.logger,
  );
  const fetcher = new MqttMetadataFetcher(conn, { timeoutMs: 10_000 }, deviceLog.logger);
  const messages = new MessageDispatcher(conn, deviceLog.logger);
  messages.register(fetcher.handler());
  messages.start();
  conn.start();
  cleanup.push(async () => {
    fetcher.close();
    messages.stop();
    await conn.stop();
  });
  await waitFor('the device to connect', () => conn.connected);
  // The dispatcher subscribes on connect too; this one is awaited, so its SUBACK is in.
  await conn.subscribe(['metadata/response']);

  // The device is provisioned with root version 1, as `root show` printed it.
  const rootFile = join(deviceDir, 'provisioned-root.json');
  await writeFile(rootFile, (await repo.readFile('1.root.json'))!);
  const open = (limits?: Partial<TufLimits>) => TrustedMetadata.open({ dir: join(deviceDir, 'tuf'), bootstrapRootFile: rootFile, fetcher, log: deviceLog.logger, ...(limits ? { limits } : {}) });
  return { repo, paths, forged, beforeServing, served, rootFile, deviceDir, deviceLog, open };
}

async function refusal(tm: TrustedMetadata): Promise<TrustError> {
  const err = await tm.refresh().then(
    () => new Error('the metadata was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrustError);
  return err as TrustError;
}

async function onlineKey(rig: Rig, role: OnlineRole): Promise<SigningKey> {
  const keyid = rig.repo.rootSummary().roles[role]!.keyids[0]!;
  const found = (await readKeyDir(rig.paths.keyDir)).get(keyid);
  if (!found) throw new Error(`no key file for ${role}`);
  return found.key;
}

describe('TUF metadata over MQTT', () => {
  it('fetches and verifies the metadata from the repository and gives a target and the desired keys', async () => {
    const rig = await startRig();
    await rig.repo.addTarget(target);
    const tm = await rig.open();
    await tm.refresh();
    expect(await tm.targetInfo(target.path)).toEqual({ path: target.path, length: 1234, hashes: target.hashes, custom: target.custom });
    expect(await tm.targetInfo('models/other.onnx')).toBeUndefined();
    expect(await readdir(join(rig.deviceDir, 'tuf'))).toEqual(expect.arrayContaining(['root.json', 'timestamp.json', 'snapshot.json', 'targets.json']));

    // Desired states are checked against root.roles.desired.
    expect(tm.roleKeys('desired')).toEqual(rig.repo.desiredKeys());
    const doc = { _type: 'desired-state', deviceId: DEVICE, generation: 1 };
    expect(tm.checkDesiredSignatures(signEnvelope(doc, rig.repo.desiredSigners())).ok).toBe(true);
    expect(tm.checkDesiredSignatures(signEnvelope(doc, [await onlineKey(rig, 'targets')])).ok).toBe(false);
  });

  it('follows root rotations v1 -> v2 -> v3 from a device that only had v1', async () => {
    const rig = await startRig();
    const k2 = generateSigningKey();
    await rig.repo.rotateRoot({ signers: [k2], rootKeys: [k2.publicKey], rotate: ['timestamp'] });
    const k3 = [generateSigningKey(), generateSigningKey()];
    await rig.repo.rotateRoot({ signers: [k2, ...k3], rootKeys: k3.map((k) => k.publicKey), rootThreshold: 2, rotate: ['targets', 'snapshot'] });
    await rig.repo.addTarget(target);

    const tm = await rig.open();
    expect(tm.trustedRoot().version).toBe(1);
    await tm.refresh();
    expect(tm.trustedRoot().version).toBe(3);
    expect(tm.roleKeys('root')).toEqual({ keys: k3.map((k) => k.publicKey), threshold: 2 });
    expect((await tm.targetInfo(target.path))?.length).toBe(1234);
  });

  it('refuses a new root that the old root keys did not sign', async () => {
    const rig = await startRig();
    const attacker = generateSigningKey();
    const v1 = parse(await rig.repo.readFile('1.root.json'));
    const signed = structuredClone(v1.signed) as Doc['signed'] & { keys: Record<string, unknown>; roles: Record<string, unknown> };
    signed.version = 2;
    signed.keys[attacker.keyid] = attacker.publicKey;
    signed.roles.root = { keyids: [attacker.keyid], threshold: 1 };
    rig.forged.set('2.root.json', forge(signed, [attacker]));

    const tm = await rig.open();
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'signature', file: '2.root.json' });
    expect(err.message).toMatch(/bad or insufficient signatures \(arbitrary or tampered metadata\): 2\.root\.json \(version 2\): root was signed by 0\/1 keys/);
    expect(tm.trustedRoot().version).toBe(1);
  });

  it('refuses tampered metadata', async () => {
    const rig = await startRig();
    await rig.repo.addTarget(target);
    const tm = await rig.open();

    // A signed field changed: the signature no longer matches.
    const timestamp = parse(await rig.repo.readFile('timestamp.json'));
    timestamp.signed.expires = '2099-01-01T00:00:00Z';
    rig.forged.set('timestamp.json', bytes(timestamp));
    expect(await refusal(tm)).toMatchObject({ failure: 'signature', file: 'timestamp.json' });

    // A target's length changed (the file keeps its size): not the targets.json the snapshot pinned.
    rig.forged.clear();
    const targets = parse(await rig.repo.readFile('targets.json'));
    (targets.signed.targets as Record<string, { length: number }>)[target.path]!.length = 4321;
    rig.forged.set('targets.json', bytes(targets));
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'mix-and-match', file: '2.targets.json' });
    expect(err.message).toMatch(/Expected hash/);
  });

  it('refuses metadata signed by a key root does not trust for that role', async () => {
    const rig = await startRig();
    const tm = await rig.open();
    const timestamp = parse(await rig.repo.readFile('timestamp.json'));
    const newer = { ...timestamp.signed, version: timestamp.signed.version + 1 };
    for (const key of [generateSigningKey(), await onlineKey(rig, 'snapshot')]) {
      rig.forged.set('timestamp.json', forge(newer, [key]));
      const err = await refusal(tm);
      expect(err).toMatchObject({ failure: 'signature', file: 'timestamp.json' });
      expect(err.message).toMatch(/timestamp was signed by 0\/1 keys/);
    }
    rig.forged.clear();
    await tm.refresh();
  });

  it('refuses an expired timestamp (freeze)', async () => {
    // Metadata signed three days ago: the one-day timestamp has expired.
    const rig = await startRig({ now: () => new Date(Date.now() - 3 * DAY) });
    const tm = await rig.open();
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'expired', file: 'timestamp.json' });
    expect(err.message).toMatch(/freeze attack/);
  });

  it('refuses an older timestamp or snapshot replayed', async () => {
    const rig = await startRig();
    const tm = await rig.open();
    await tm.refresh();
    const timestamp1 = await rig.repo.readFile('timestamp.json');
    await rig.repo.addTarget(target);
    await tm.refresh();
    const snapshot2 = await rig.repo.readFile('snapshot.json');

    rig.forged.set('timestamp.json', timestamp1);
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'rollback', file: 'timestamp.json' });
    expect(err.message).toMatch(/version 1 is less than current version 2/);

    // A newer timestamp with the snapshot it replaced.
    rig.forged.clear();
    await rig.repo.addTarget({ ...target, path: 'models/second.onnx' });
    rig.forged.set('snapshot.json', snapshot2);
    const replay = await refusal(tm);
    expect(replay).toMatchObject({ failure: 'mix-and-match', file: '3.snapshot.json' });
    expect(replay.message).toMatch(/snapshot\.json \(version 2\)/);
    rig.forged.clear();
    await tm.refresh();
    expect(await tm.targetInfo('models/second.onnx')).toBeDefined();
  });

  it('refuses mix-and-match: an old targets.json with a newer snapshot', async () => {
    const rig = await startRig();
    const targets1 = await rig.repo.readFile('targets.json');
    await rig.repo.addTarget(target);
    rig.forged.set('targets.json', targets1);
    const err = await refusal(await rig.open());
    expect(err).toMatchObject({ failure: 'mix-and-match', file: '2.targets.json' });
    expect(err.message).toMatch(/2\.targets\.json \(version 1\)/);
  });

  it('asks for the targets version its snapshot lists, so a change written mid-refresh does not mix versions (consistent snapshots)', async () => {
    const rig = await startRig();
    const tm = await rig.open();
    await tm.refresh();
    await rig.repo.addTarget(target);
    // The next change lands after the device has read snapshot 2 and before it asks for targets.
    let changed: Promise<number> | null = null;
    rig.beforeServing.set('2.targets.json', async () => {
      changed = rig.repo.addTarget({ ...target, path: 'models/next.onnx' });
    });
    await tm.refresh();
    expect(changed).not.toBeNull();
    expect(await changed).toBe(3);
    expect(rig.served).toEqual(expect.arrayContaining(['2.snapshot.json', '2.targets.json']));
    expect(await tm.targetInfo(target.path)).toBeDefined();
    // The plain targets.json had already moved on to version 3: asked for by that name, the refresh would have been refused.
    expect(parse(await rig.repo.readFile('targets.json')).signed.version).toBe(3);
    await tm.refresh();
    expect(await tm.targetInfo('models/next.onnx')).toBeDefined();
  });

  it('refuses a file longer than allowed: over its fixed limit, or over the length its parent signed', async () => {
    const rig = await startRig();
    const tm = await rig.open({ timestampMaxLength: 4096 });
    const timestamp = (await rig.repo.readFile('timestamp.json'))!;
    // Trailing white space keeps it valid JSON with valid signatures: only its size is wrong.
    rig.forged.set('timestamp.json', Buffer.concat([timestamp, Buffer.alloc(5000, 0x20)]));
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'endless-data', file: 'timestamp.json' });
    expect(err.message).toMatch(/more than the 4096 allowed/);

    rig.forged.clear();
    const snapshot = (await rig.repo.readFile('snapshot.json'))!;
    rig.forged.set('snapshot.json', Buffer.concat([snapshot, Buffer.from('   ')]));
    const signedLength = await refusal(tm);
    expect(signedLength).toMatchObject({ failure: 'endless-data', file: '1.snapshot.json' });
    expect(signedLength.message).toContain(`more than the ${snapshot.length} allowed`);
  });

  it('no longer accepts a revoked key', async () => {
    const rig = await startRig();
    const tm = await rig.open();
    await tm.refresh();
    const stolen = await onlineKey(rig, 'timestamp');
    await rig.repo.revokeKey(stolen.keyid);

    const timestamp = parse(await rig.repo.readFile('timestamp.json'));
    rig.forged.set('timestamp.json', forge({ ...timestamp.signed, version: timestamp.signed.version + 10 }, [stolen]));
    const err = await refusal(tm);
    expect(err).toMatchObject({ failure: 'signature', file: 'timestamp.json' });
    // The device walked to the root that dropped the key before it looked at the timestamp.
    expect(tm.trustedRoot().version).toBe(2);
    expect(tm.roleKeys('timestamp')?.keys.map((k) => k.keyval.public)).not.toContain(stolen.publicKey.keyval.public);

    rig.forged.clear();
    await tm.refresh();
  });

  it('says when metadata is missing', async () => {
    const rig = await startRig();
    rig.forged.set('timestamp.json', null);
    expect(await refusal(await rig.open())).toMatchObject({ failure: 'unavailable', file: 'timestamp.json' });
  });

  it('keeps a newer local root over an older provisioned one, installs a newer provisioned one, refuses one not self-signed', async () => {
    const rig = await startRig();
    await rig.repo.rotateOnlineKey('desired');
    const tm = await rig.open();
    await tm.refresh();
    expect(tm.trustedRoot().version).toBe(2);
    // Restarted with the same (version 1) provisioned file.
    expect((await rig.open()).trustedRoot().version).toBe(2);

    await rig.repo.rotateOnlineKey('desired');
    await writeFile(rig.rootFile, (await rig.repo.readFile('3.root.json'))!);
    expect((await rig.open()).trustedRoot().version).toBe(3);

    // A fresh device provisioned with a root whose signature does not match it.
    await rm(join(rig.deviceDir, 'tuf'), { recursive: true });
    const bad = parse(await rig.repo.readFile('1.root.json'));
    bad.signed.expires = '2099-01-01T00:00:00Z';
    await writeFile(rig.rootFile, bytes(bad));
    await expect(rig.open()).rejects.toMatchObject({ failure: 'signature' });
    await expect(readdir(join(rig.deviceDir, 'tuf'))).resolves.not.toContain('root.json');
  });
});
