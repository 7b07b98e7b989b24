import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSigningKey, keyIdOf, metadataFileNameSchema, writeFileAtomic, type PublicKey, type SigningKey } from '@perch/shared';
import { Metadata, MetadataKind, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import type { Logger } from 'pino';
import { z } from 'zod';
import { publicKeyOf, readKeyDir, removeKeyFile, tufSigner, writeKeyFile } from './tuf-keys.js';

/**
 * The control plane's TUF repository: root, targets, snapshot and timestamp
 * metadata in one folder, served to devices by file name.
 *
 * Keys. Root keys sign only new roots; their private halves live in a folder
 * of their own (`rootKeyDir`) so that production can keep it empty and bring
 * the key files only to a root change (`perch-control-plane root rotate`,
 * `keys revoke`). The demo setup creates one root key there on first start:
 * move it offline for production. The online roles (targets, snapshot,
 * timestamp, and Perch's `desired`, whose keys sign per-device desired
 * states) have one key each in `keyDir`, used unattended.
 *
 * Files. `N.root.json` for every root version (devices walk them in order),
 * `root.json` (the latest), `targets.json`, `snapshot.json`, `timestamp.json`,
 * and TUF's consistent snapshots: `N.targets.json` and `N.snapshot.json` for
 * the last KEPT_VERSIONS versions. A device that read snapshot N asks for the
 * targets version snapshot N lists, by its versioned name, so a change
 * written while it refreshes cannot hand it a mismatched pair. (Artifacts are
 * fetched by sha256 already, which is what consistent snapshots ask of target
 * files.) Roots made before consistent snapshots turn them on at their next
 * change. Every write is atomic, and the order targets, snapshot, timestamp
 * means a reader sees a complete older set or, after the timestamp, a complete
 * newer one. The files are the state: each change re-reads them first, so the
 * operator's commands and a running control plane see each other's changes.
 */

export const ONLINE_ROLES = ['targets', 'snapshot', 'timestamp', 'desired'] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];
/** Roles that have a metadata file of their own besides root. */
type FileRole = 'targets' | 'snapshot' | 'timestamp';
export type ExpiringRole = 'root' | FileRole;

export const DEFAULT_EXPIRY_DAYS: Readonly<Record<ExpiringRole, number>> = { root: 365, targets: 90, snapshot: 7, timestamp: 1 };

const SPEC_VERSION = '1.0.31';
/** Versioned targets and snapshot files kept for devices in the middle of a refresh. */
export const KEPT_VERSIONS = 16;
const DAY_MS = 86_400_000;

type RootJson = Parameters<typeof Root.fromJSON>[0];
type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };

// TUF's canonical JSON has no fractional numbers: a signature over one could not be made or checked.
const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number().refine(Number.isSafeInteger, 'only integers: TUF canonical JSON has no fractional numbers (write it as a string)'),
    z.boolean(),
    z.null(),
    z.array(jsonValueSchema),
    z.record(z.string(), jsonValueSchema),
  ]),
);

export const targetInputSchema = z
  .object({
    /** the target's name in targets.json, e.g. `models/<sha256>.onnx` */
    path: z
      .string()
      .min(1)
      .max(512)
      .regex(/^[A-Za-z0-9_-][A-Za-z0-9._/-]*$/, 'letters, digits, . _ - and /, not starting with . or /')
      .refine((p) => p.split('/').every((s) => s !== '' && s !== '.' && s !== '..'), 'no empty, . or .. path segments'),
    length: z.number().int().min(0),
    hashes: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/, '32-byte lowercase hex') }).strict(),
    custom: z.record(z.string(), jsonValueSchema).optional(),
  })
  .strict();
export type TargetInput = z.infer<typeof targetInputSchema>;

export interface TufRepositoryOptions {
  /** the metadata files, e.g. `<dataDir>/tuf/repository` */
  dir: string;
  /** private keys of the online roles, e.g. `<dataDir>/keys/online` */
  keyDir: string;
  /** private root keys at hand, e.g. `<dataDir>/keys/root`; empty when they are kept offline */
  rootKeyDir: string;
  /** lifetimes in days; fractions allowed */
  expiryDays?: Partial<Record<ExpiringRole, number>>;
  /** how often the timer looks for metadata to re-sign; default an eighth of the shortest online lifetime, at most an hour */
  checkIntervalMs?: number;
  now?: () => Date;
  log: Logger;
}

/** Where a control plane keeps its repository and keys under its data folder. */
export function tufRepositoryPaths(dataDir: string): Pick<TufRepositoryOptions, 'dir' | 'keyDir' | 'rootKeyDir'> {
  return { dir: join(dataDir, 'tuf', 'repository'), keyDir: join(dataDir, 'keys', 'online'), rootKeyDir: join(dataDir, 'keys', 'root') };
}

export type TufRepositoryErrorCode = 'not_initialised' | 'unknown_key' | 'root_signatures_missing' | 'online_key_missing' | 'invalid_change';

export class TufRepositoryError extends Error {
  override readonly name = 'TufRepositoryError';
  constructor(
    readonly code: TufRepositoryErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface RoleSummary {
  keyids: string[];
  threshold: number;
}

export interface RootSummary {
  version: number;
  expires: string;
  roles: Record<string, RoleSummary>;
}

export interface RootChange {
  /** root private keys at hand, of the current and of the new root; the ones in `rootKeyDir` are always used */
  signers?: readonly SigningKey[];
  /** the new root role's keys; default: the current ones */
  rootKeys?: readonly PublicKey[];
  /** the new root role's threshold; default: the current one */
  rootThreshold?: number;
  /** online roles that get a fresh key */
  rotate?: readonly OnlineRole[];
  /** key ids removed from every role; an online role left short of keys gets a fresh one */
  revoke?: readonly string[];
}

interface Stored<T extends Root | Targets | Snapshot | Timestamp> {
  md: Metadata<T>;
  bytes: Buffer;
}

interface KeyFile {
  key: SigningKey;
  file: string;
}

interface State {
  root: Stored<Root>;
  targets: Stored<Targets>;
  snapshot: Stored<Snapshot>;
  timestamp: Stored<Timestamp>;
  onlineKeys: Map<string, KeyFile>;
  rootKeys: Map<string, KeyFile>;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const encode = (md: Metadata<Root | Targets | Snapshot | Timestamp>) => Buffer.from(JSON.stringify(md.toJSON()), 'utf8');

/** A MetaFile that pins a file's version, length and hash, so a device takes no other file and no more bytes. */
function metaFileOf(stored: Stored<Targets | Snapshot>): MetaFile {
  return new MetaFile({ version: stored.md.signed.version, length: stored.bytes.length, hashes: { sha256: sha256(stored.bytes) } });
}

function describes(meta: MetaFile | undefined, stored: Stored<Targets | Snapshot>): boolean {
  return meta !== undefined && meta.version === stored.md.signed.version && meta.length === stored.bytes.length && meta.hashes?.sha256 === sha256(stored.bytes);
}

function signedBy(root: Metadata<Root>, role: string, md: Metadata<Root | Targets | Snapshot | Timestamp>): boolean {
  try {
    root.verifyDelegate(role, md);
    return true;
  } catch {
    return false;
  }
}

function summary(root: Root): RootSummary {
  return {
    version: root.version,
    expires: root.expires,
    roles: Object.fromEntries(Object.entries(root.roles).map(([name, r]) => [name, { keyids: [...r.keyIDs], threshold: r.threshold }])),
  };
}

export class TufRepository {
  private state: State | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private readonly lifetimeMs: Record<ExpiringRole, number>;
  private readonly now: () => Date;
  private readonly log: Logger;

  constructor(private readonly opts: TufRepositoryOptions) {
    const days = { ...DEFAULT_EXPIRY_DAYS, ...opts.expiryDays };
    for (const [role, d] of Object.entries(days)) {
      if (!(d > 0)) throw new TufRepositoryError('invalid_change', `expiry of ${role} must be a positive number of days, not ${d}`);
    }
    this.lifetimeMs = { root: days.root * DAY_MS, targets: days.targets * DAY_MS, snapshot: days.snapshot * DAY_MS, timestamp: days.timestamp * DAY_MS };
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log;
  }

  /** Loads the repository; with `create` (the default) makes version 1 of everything when there is none. */
  open(opts: { create?: boolean } = {}): Promise<void> {
    return this.exclusive(async () => {
      await this.load(opts.create ?? true);
    });
  }

  /** Re-signs expiring online metadata every `checkIntervalMs`, starting now. */
  start(): void {
    if (this.timer) return;
    const online = Math.min(this.lifetimeMs.targets, this.lifetimeMs.snapshot, this.lifetimeMs.timestamp);
    const every = this.opts.checkIntervalMs ?? Math.max(1000, Math.min(3_600_000, online / 8));
    const tick = () => {
      this.refreshExpiring().catch((err: unknown) => this.log.error({ err }, 'TUF metadata re-signing failed'));
    };
    this.timer = setInterval(tick, every);
    this.timer.unref();
    tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.queue;
  }

  /**
   * Re-signs, with a new version, each online role past half its lifetime,
   * and what lists it (targets -> snapshot -> timestamp). Root, in its last
   * quarter, gets a new version with the same keys when its root keys are at
   * hand (the demo setup); kept offline, they are asked for in a warning.
   * Returns the roles re-signed.
   */
  refreshExpiring(): Promise<ExpiringRole[]> {
    return this.exclusive(async () => {
      const s = await this.load(false);
      const due = (role: ExpiringRole, expires: string) => Date.parse(expires) - this.now().getTime() <= this.lifetimeMs[role] / 2;
      const done: ExpiringRole[] = [];
      const rootExpires = s.root.md.signed.expires;
      if (Date.parse(rootExpires) - this.now().getTime() <= this.lifetimeMs.root / 4) {
        if (this.rootSignersAtHand(s)) {
          await this.applyRootChange(s, {});
          done.push('root');
        } else {
          this.log.warn({ expires: rootExpires, version: s.root.md.signed.version }, 'TUF root metadata expires soon: sign a new root with the root keys (root rotate)');
        }
      }
      if (due('targets', s.targets.md.signed.expires)) {
        await this.writeTargets(s, s.targets.md.signed.targets);
        done.push('targets');
      }
      if (done.includes('targets') || due('snapshot', s.snapshot.md.signed.expires)) {
        await this.writeSnapshot(s);
        done.push('snapshot');
      }
      if (done.includes('snapshot') || due('timestamp', s.timestamp.md.signed.expires)) {
        await this.writeTimestamp(s);
        done.push('timestamp');
      }
      if (done.length > 0) this.log.info({ roles: done, rootVersion: s.root.md.signed.version, timestampVersion: s.timestamp.md.signed.version }, 're-signed TUF metadata before it expires');
      return done;
    });
  }

  /** Replaces the whole target list: new targets, snapshot and timestamp versions. Returns the targets version. */
  async setTargets(targets: readonly TargetInput[]): Promise<number> {
    const parsed = targets.map((t) => targetInputSchema.parse(t));
    const version = await this.changeTargets(() => Object.fromEntries(parsed.map((t) => [t.path, targetFile(t)])));
    return version ?? this.loaded.targets.md.signed.version;
  }

  /** Adds or replaces one target. Returns the new targets version. */
  async addTarget(target: TargetInput): Promise<number> {
    const t = targetInputSchema.parse(target);
    const version = await this.changeTargets((current) => ({ ...current, [t.path]: targetFile(t) }));
    return version ?? this.loaded.targets.md.signed.version;
  }

  /**
   * Adds the targets the repository does not list yet (registered before it
   * existed, or before a crash between registering and signing); null and
   * nothing re-signed when none are missing.
   */
  addMissingTargets(targets: readonly TargetInput[]): Promise<number | null> {
    const parsed = targets.map((t) => targetInputSchema.parse(t));
    return this.changeTargets((current) => {
      const missing = parsed.filter((t) => !Object.hasOwn(current, t.path));
      return missing.length === 0 ? null : { ...current, ...Object.fromEntries(missing.map((t) => [t.path, targetFile(t)])) };
    });
  }

  /** Removes one target and returns the new targets version; null when there was none by that path (nothing is re-signed). */
  removeTarget(path: string): Promise<number | null> {
    return this.changeTargets((current) => {
      if (!Object.hasOwn(current, path)) return null;
      const next = { ...current };
      delete next[path];
      return next;
    });
  }

  /**
   * A new root, version N+1, signed by the threshold of the current root's
   * root keys and by the threshold of its own (TUF's rotation rule), checked
   * with the same code devices run before anything is written. Then the
   * metadata of every role whose keys changed is re-signed.
   */
  rotateRoot(change: RootChange): Promise<RootSummary> {
    return this.exclusive(async () => this.applyRootChange(await this.load(false), change));
  }

  /** A fresh key for one online role, in a new root. */
  rotateOnlineKey(role: OnlineRole, rootSigners: readonly SigningKey[] = []): Promise<RootSummary> {
    return this.rotateRoot({ rotate: [role], signers: rootSigners });
  }

  /** A new root without the key; an online role it belonged to gets a fresh key and its metadata re-signed. */
  revokeKey(keyid: string, rootSigners: readonly SigningKey[] = []): Promise<RootSummary> {
    return this.rotateRoot({ revoke: [keyid], signers: rootSigners });
  }

  /** A metadata file as devices ask for it; null when the repository has none by that name. */
  async readFile(name: string): Promise<Buffer | null> {
    if (!metadataFileNameSchema.safeParse(name).success) return null;
    // The timestamp is the one file never asked for by version.
    if (/^\d+\.timestamp\.json$/.test(name)) return null;
    try {
      return await readFile(join(this.opts.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** The latest root.json as stored: the file a device is provisioned with. */
  async currentRoot(): Promise<Record<string, unknown>> {
    const bytes = await this.readFile('root.json');
    if (!bytes) throw new TufRepositoryError('not_initialised', `no TUF repository in ${this.opts.dir}`);
    return JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  }

  /** Versions, expiry and keys of the root as last loaded. */
  rootSummary(): RootSummary {
    return summary(this.loaded.root.md.signed);
  }

  /** The public keys and threshold devices check desired states against (root.roles.desired). */
  desiredKeys(): { keys: PublicKey[]; threshold: number } {
    const root = this.loaded.root.md.signed;
    const role = root.roles.desired;
    if (!role) throw new TufRepositoryError('not_initialised', 'root has no desired role');
    const keys = role.keyIDs.flatMap((id) => {
      const key = root.keys[id];
      const pub = key ? publicKeyOf(key) : null;
      return pub ? [pub] : [];
    });
    return { keys, threshold: role.threshold };
  }

  /** The private keys that sign desired states (at least the desired role's threshold). */
  desiredSigners(): SigningKey[] {
    return this.onlineSigners(this.loaded, 'desired');
  }

  /** Whether the root keys in rootKeyDir alone meet the root threshold. */
  private rootSignersAtHand(s: State): boolean {
    const role = s.root.md.signed.roles.root;
    return role !== undefined && role.keyIDs.filter((id) => s.rootKeys.has(id)).length >= role.threshold;
  }

  private get loaded(): State {
    if (!this.state) throw new TufRepositoryError('not_initialised', 'TUF repository not opened');
    return this.state;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private expires(role: ExpiringRole): string {
    return new Date(this.now().getTime() + this.lifetimeMs[role]).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  /** `change` returns the new target list, or null to leave everything as it is (then null is returned). */
  private changeTargets(change: (current: Record<string, TargetFile>) => Record<string, TargetFile> | null): Promise<number | null> {
    return this.exclusive(async () => {
      const s = await this.load(false);
      const next = change(s.targets.md.signed.targets);
      if (next === null) return null;
      await this.writeTargets(s, next);
      await this.writeSnapshot(s);
      await this.writeTimestamp(s);
      this.log.info({ targetsVersion: s.targets.md.signed.version, targets: Object.keys(next).length }, 'TUF targets changed');
      return s.targets.md.signed.version;
    });
  }

  // ---- loading ---------------------------------------------------------------

  /** Reads the files and keys, finishing any change a crash cut short. */
  private async load(create: boolean): Promise<State> {
    const { dir } = this.opts;
    if (create) await mkdir(dir, { recursive: true });
    const onlineKeys = await readKeyDir(this.opts.keyDir);
    const rootKeys = await readKeyDir(this.opts.rootKeyDir);
    let root = await this.latestRoot();
    if (!root) {
      if (!create) throw new TufRepositoryError('not_initialised', `no TUF repository in ${dir}`);
      root = await this.createFirstRoot(onlineKeys, rootKeys);
    }
    const targets = await this.readRole(MetadataKind.Targets);
    const snapshot = await this.readRole(MetadataKind.Snapshot);
    const timestamp = await this.readRole(MetadataKind.Timestamp);
    // Missing files are made below, before anything reads these fields.
    const s: State = { root, onlineKeys, rootKeys, targets: targets!, snapshot: snapshot!, timestamp: timestamp! };
    // Not fatal here: a root change that gives the role a fresh key is the way out.
    const keyless = ONLINE_ROLES.filter((role) => (root.md.signed.roles[role]?.keyIDs ?? []).every((id) => !onlineKeys.has(id)));
    if (keyless.length > 0) this.log.warn({ roles: keyless, keyDir: this.opts.keyDir }, 'no private key for these TUF roles: rotate their keys (a root change)');

    const repaired: FileRole[] = [];
    if (!targets || !signedBy(root.md, 'targets', targets.md)) {
      if (!targets) this.log.warn({ dir }, 'no readable targets.json: starting an empty one');
      const versionFloor = Math.max(targets?.md.signed.version ?? 0, snapshot?.md.signed.meta['targets.json']?.version ?? 0);
      await this.writeTargets(s, targets?.md.signed.targets ?? {}, versionFloor + 1);
      repaired.push('targets');
    }
    if (repaired.length > 0 || !snapshot || !signedBy(root.md, 'snapshot', snapshot.md) || !describes(snapshot.md.signed.meta['targets.json'], s.targets)) {
      const versionFloor = Math.max(snapshot?.md.signed.version ?? 0, timestamp?.md.signed.snapshotMeta.version ?? 0);
      await this.writeSnapshot(s, versionFloor + 1);
      repaired.push('snapshot');
    }
    if (repaired.length > 0 || !timestamp || !signedBy(root.md, 'timestamp', timestamp.md) || !describes(timestamp.md.signed.snapshotMeta, s.snapshot)) {
      await this.writeTimestamp(s, (timestamp?.md.signed.version ?? 0) + 1);
      repaired.push('timestamp');
    }
    if (repaired.length > 0) this.log.info({ roles: repaired, rootVersion: root.md.signed.version }, 'TUF metadata written');
    // Versioned copies of what is current: a repository from before consistent snapshots, or a crash between the two writes.
    for (const role of ['targets', 'snapshot'] as const) {
      const name = `${s[role].md.signed.version}.${role}.json`;
      if (!(await this.readFile(name))) await writeFileAtomic(join(dir, name), s[role].bytes);
    }
    this.state = s;
    return s;
  }

  /** The highest N.root.json; root.json is brought up to it if a crash left it behind. */
  private async latestRoot(): Promise<Stored<Root> | null> {
    let names: string[];
    try {
      names = await readdir(this.opts.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const versions = names.flatMap((n) => /^([1-9][0-9]*)\.root\.json$/.exec(n)?.[1] ?? []).map(Number);
    if (versions.length === 0) return null;
    const latest = Math.max(...versions);
    const bytes = await readFile(join(this.opts.dir, `${latest}.root.json`));
    const md = Metadata.fromJSON(MetadataKind.Root, JSON.parse(bytes.toString('utf8')) as RootJson);
    const current = await this.readFile('root.json');
    if (!current || !current.equals(bytes)) await writeFileAtomic(join(this.opts.dir, 'root.json'), bytes);
    return { md, bytes };
  }

  private async readRole(kind: MetadataKind.Targets): Promise<Stored<Targets> | null>;
  private async readRole(kind: MetadataKind.Snapshot): Promise<Stored<Snapshot> | null>;
  private async readRole(kind: MetadataKind.Timestamp): Promise<Stored<Timestamp> | null>;
  private async readRole(kind: MetadataKind.Targets | MetadataKind.Snapshot | MetadataKind.Timestamp): Promise<Stored<Targets | Snapshot | Timestamp> | null> {
    const bytes = await this.readFile(`${kind}.json`);
    if (!bytes) return null;
    try {
      const json = JSON.parse(bytes.toString('utf8')) as RootJson;
      // The overloads of fromJSON take one literal kind each.
      const md =
        kind === MetadataKind.Targets
          ? Metadata.fromJSON(MetadataKind.Targets, json)
          : kind === MetadataKind.Snapshot
            ? Metadata.fromJSON(MetadataKind.Snapshot, json)
            : Metadata.fromJSON(MetadataKind.Timestamp, json);
      return { md, bytes };
    } catch (err) {
      this.log.error({ file: `${kind}.json`, err: (err as Error).message }, 'unreadable TUF metadata file; it will be re-made');
      return null;
    }
  }

  private async createFirstRoot(onlineKeys: Map<string, KeyFile>, rootKeys: Map<string, KeyFile>): Promise<Stored<Root>> {
    if (rootKeys.size === 0) {
      await mkdir(this.opts.rootKeyDir, { recursive: true, mode: 0o700 });
      const key = generateSigningKey();
      const file = join(this.opts.rootKeyDir, `root-${key.keyid}.pem`);
      await writeKeyFile(file, key);
      rootKeys.set(key.keyid, { key, file });
      this.log.warn({ rootKeyDir: this.opts.rootKeyDir, keyid: key.keyid }, 'created a TUF root key kept online (demo setup): for production move it offline');
    }
    const keys: Record<string, PublicKey> = {};
    const roles: Record<string, RoleSummary> = { root: { keyids: [...rootKeys.keys()], threshold: 1 } };
    for (const { key } of rootKeys.values()) keys[key.keyid] = key.publicKey;
    await mkdir(this.opts.keyDir, { recursive: true, mode: 0o700 });
    for (const role of ONLINE_ROLES) {
      const key = await this.newOnlineKey(role, onlineKeys);
      keys[key.keyid] = key.publicKey;
      roles[role] = { keyids: [key.keyid], threshold: 1 };
    }
    const md = new Metadata(Root.fromJSON({ _type: 'root', spec_version: SPEC_VERSION, version: 1, expires: this.expires('root'), consistent_snapshot: true, keys, roles } as unknown as RootJson));
    for (const { key } of rootKeys.values()) md.sign(tufSigner(key));
    const stored = { md, bytes: encode(md) };
    await this.writeRootFiles(stored);
    this.log.info({ dir: this.opts.dir, rootKeys: roles.root?.keyids }, 'created TUF repository (root version 1)');
    return stored;
  }

  private async newOnlineKey(role: OnlineRole, onlineKeys: Map<string, KeyFile>): Promise<SigningKey> {
    const key = generateSigningKey();
    const file = join(this.opts.keyDir, `${role}-${key.keyid}.pem`);
    await writeKeyFile(file, key);
    onlineKeys.set(key.keyid, { key, file });
    return key;
  }

  // ---- writing ---------------------------------------------------------------

  private onlineSigners(s: State, role: OnlineRole): SigningKey[] {
    const r = s.root.md.signed.roles[role];
    if (!r) throw new TufRepositoryError('online_key_missing', `root has no ${role} role`);
    const keys = r.keyIDs.flatMap((id) => s.onlineKeys.get(id)?.key ?? []);
    if (keys.length < r.threshold) {
      throw new TufRepositoryError('online_key_missing', `${keys.length} of the ${r.threshold} private keys of the ${role} role are in ${this.opts.keyDir} (key ids ${r.keyIDs.join(', ')})`);
    }
    return keys;
  }

  private async writeRole<T extends Targets | Snapshot | Timestamp>(s: State, role: FileRole, signed: T): Promise<Stored<T>> {
    const md = new Metadata(signed);
    for (const key of this.onlineSigners(s, role)) md.sign(tufSigner(key));
    const stored = { md, bytes: encode(md) };
    if (role !== 'timestamp') {
      // The versioned file first: the plain one, and what lists this version, may only name a file that exists.
      await writeFileAtomic(join(this.opts.dir, `${signed.version}.${role}.json`), stored.bytes);
      await this.pruneVersions(role, signed.version - KEPT_VERSIONS);
    }
    await writeFileAtomic(join(this.opts.dir, `${role}.json`), stored.bytes);
    return stored;
  }

  /** Removes `N.role.json` files with N at or below `upTo`. */
  private async pruneVersions(role: 'targets' | 'snapshot', upTo: number): Promise<void> {
    if (upTo < 1) return;
    const pattern = new RegExp(`^([1-9][0-9]*)\\.${role}\\.json$`);
    for (const name of await readdir(this.opts.dir)) {
      const v = pattern.exec(name)?.[1];
      if (v !== undefined && Number(v) <= upTo) await rm(join(this.opts.dir, name), { force: true });
    }
  }

  private async writeTargets(s: State, targets: Record<string, TargetFile>, version = s.targets.md.signed.version + 1): Promise<void> {
    s.targets = await this.writeRole(s, 'targets', new Targets({ version, specVersion: SPEC_VERSION, expires: this.expires('targets'), targets }));
  }

  private async writeSnapshot(s: State, version = s.snapshot.md.signed.version + 1): Promise<void> {
    const meta = { 'targets.json': metaFileOf(s.targets) };
    s.snapshot = await this.writeRole(s, 'snapshot', new Snapshot({ version, specVersion: SPEC_VERSION, expires: this.expires('snapshot'), meta }));
  }

  private async writeTimestamp(s: State, version = s.timestamp.md.signed.version + 1): Promise<void> {
    const snapshotMeta = metaFileOf(s.snapshot);
    s.timestamp = await this.writeRole(s, 'timestamp', new Timestamp({ version, specVersion: SPEC_VERSION, expires: this.expires('timestamp'), snapshotMeta }));
  }

  /** N.root.json first: root.json is only ever a copy of the latest one. */
  private async writeRootFiles(root: Stored<Root>): Promise<void> {
    await writeFileAtomic(join(this.opts.dir, `${root.md.signed.version}.root.json`), root.bytes);
    await writeFileAtomic(join(this.opts.dir, 'root.json'), root.bytes);
  }

  private async applyRootChange(s: State, change: RootChange): Promise<RootSummary> {
    const old = s.root.md;
    const current = old.signed.toJSON() as unknown as { keys: Record<string, unknown>; roles: Record<string, RoleSummary> };
    const keys: Record<string, unknown> = structuredClone(current.keys);
    const roles: Record<string, RoleSummary> = structuredClone(current.roles);
    const revoke = new Set(change.revoke ?? []);
    for (const id of revoke) if (!keys[id]) throw new TufRepositoryError('unknown_key', `no key ${id} in root version ${old.signed.version}`);

    const rootRole = roles.root ?? { keyids: [], threshold: 1 };
    if (change.rootKeys) {
      rootRole.keyids = [...new Set(change.rootKeys.map((k) => keyIdOf(k)))];
      for (const k of change.rootKeys) keys[keyIdOf(k)] = k;
    }
    if (change.rootThreshold !== undefined) rootRole.threshold = change.rootThreshold;
    roles.root = rootRole;
    for (const role of Object.values(roles)) role.keyids = role.keyids.filter((id) => !revoke.has(id));
    if (!Number.isInteger(rootRole.threshold) || rootRole.threshold < 1 || rootRole.keyids.length < rootRole.threshold) {
      throw new TufRepositoryError('invalid_change', `the new root role would have ${rootRole.keyids.length} key(s) for a threshold of ${rootRole.threshold}`);
    }

    // Fresh keys are made in memory now and written only once the new root is known to be valid.
    const fresh: { role: OnlineRole; key: SigningKey }[] = [];
    const rotate = new Set(change.rotate ?? []);
    for (const role of ONLINE_ROLES) {
      const r = roles[role];
      if (rotate.has(role) || !r || r.keyids.length < r.threshold) {
        const key = generateSigningKey();
        keys[key.keyid] = key.publicKey;
        roles[role] = { keyids: [key.keyid], threshold: 1 };
        fresh.push({ role, key });
      }
    }
    const wasUsed = new Set(Object.values(current.roles).flatMap((r) => r.keyids));
    const used = new Set(Object.values(roles).flatMap((r) => r.keyids));
    for (const id of Object.keys(keys)) if (!used.has(id)) delete keys[id];

    const signed = Root.fromJSON({
      ...(old.signed.toJSON() as Record<string, unknown>),
      version: old.signed.version + 1,
      expires: this.expires('root'),
      consistent_snapshot: true,
      keys,
      roles,
    } as unknown as RootJson);
    const next = new Metadata(signed);
    const eligible = new Set([...(current.roles.root?.keyids ?? []), ...rootRole.keyids]);
    const signers = new Map<string, SigningKey>();
    for (const k of [...[...s.rootKeys.values()].map((f) => f.key), ...(change.signers ?? [])]) if (eligible.has(k.keyid)) signers.set(k.keyid, k);
    for (const k of signers.values()) next.sign(tufSigner(k));

    try {
      old.verifyDelegate('root', next);
    } catch {
      throw new TufRepositoryError(
        'root_signatures_missing',
        `root version ${next.signed.version} needs ${old.signed.roles.root?.threshold} signature(s) by the current root keys (${current.roles.root?.keyids.join(', ')}); ` +
          `keys at hand: ${[...signers.keys()].join(', ') || 'none'}`,
      );
    }
    try {
      next.verifyDelegate('root', next);
    } catch {
      throw new TufRepositoryError(
        'root_signatures_missing',
        `root version ${next.signed.version} needs ${rootRole.threshold} signature(s) by its own root keys (${rootRole.keyids.join(', ')}); keys at hand: ${[...signers.keys()].join(', ') || 'none'}`,
      );
    }

    // Key files before the root that names them: a crash in between leaves only an unused file.
    await mkdir(this.opts.keyDir, { recursive: true, mode: 0o700 });
    for (const { role, key } of fresh) {
      const file = join(this.opts.keyDir, `${role}-${key.keyid}.pem`);
      await writeKeyFile(file, key);
      s.onlineKeys.set(key.keyid, { key, file });
    }
    s.root = { md: next, bytes: encode(next) };
    await this.writeRootFiles(s.root);

    const changed = (role: string) => (current.roles[role]?.keyids ?? []).join() !== (roles[role]?.keyids ?? []).join();
    const resigned: FileRole[] = [];
    if (changed('targets')) {
      await this.writeTargets(s, s.targets.md.signed.targets);
      resigned.push('targets');
    }
    if (resigned.length > 0 || changed('snapshot')) {
      await this.writeSnapshot(s);
      resigned.push('snapshot');
    }
    if (resigned.length > 0 || changed('timestamp')) {
      await this.writeTimestamp(s);
      resigned.push('timestamp');
    }

    // Keys the old root trusted and the new one does not are destroyed where this repository keeps them.
    for (const dirKeys of [s.onlineKeys, s.rootKeys]) {
      for (const [id, { file }] of dirKeys) {
        if (!wasUsed.has(id) || used.has(id)) continue;
        await removeKeyFile(file);
        dirKeys.delete(id);
      }
    }
    this.log.info(
      { rootVersion: next.signed.version, revoked: [...revoke], rotated: fresh.map((f) => f.role), resigned, rootKeys: rootRole.keyids, rootThreshold: rootRole.threshold },
      'TUF root changed',
    );
    return summary(next.signed);
  }
}

function targetFile(t: TargetInput): TargetFile {
  return new TargetFile({ path: t.path, length: t.length, hashes: { sha256: t.hashes.sha256 }, unrecognizedFields: t.custom ? { custom: t.custom } : {} });
}
