import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keyIdOf, writeFileAtomic, publicKeySchema, verifyEnvelope, type Envelope, type PublicKey, type VerifyResult } from '@perch/shared';
import { Updater, type Config, type Fetcher } from 'tuf-js';
import { BadVersionError, DownloadError, DownloadLengthMismatchError, ExpiredMetadataError } from 'tuf-js/dist/error.js';
import { z } from 'zod';
import type { Logger } from '../log/logger.js';
import { METADATA_BASE_URL } from './mqtt-metadata-fetcher.js';

/** What a refused refresh was refused for, each named by the attack it stops. */
export const TRUST_FAILURES = {
  expired: 'expired metadata (freeze attack)',
  signature: 'bad or insufficient signatures (arbitrary or tampered metadata)',
  rollback: 'version rollback',
  'mix-and-match': 'mix-and-match (not the version, length or hash its parent metadata signed)',
  'endless-data': 'more data than signed (endless data)',
  unavailable: 'metadata unavailable',
  malformed: 'malformed metadata',
} as const;
export type TrustFailure = keyof typeof TRUST_FAILURES;

export class TrustError extends Error {
  override readonly name = 'TrustError';
  constructor(
    readonly failure: TrustFailure,
    /** the metadata file being checked, when known */
    readonly file: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export type TufLimits = Pick<Config, 'maxRootRotations' | 'rootMaxLength' | 'timestampMaxLength' | 'snapshotMaxLength' | 'targetsMaxLength'>;

export interface TrustedMetadataOptions {
  /** where the trusted metadata lives, e.g. `<dataDir>/tuf` */
  dir: string;
  /** the root the device is provisioned with (`perch-control-plane root show`); needed on first start only */
  bootstrapRootFile: string;
  fetcher: Fetcher;
  /** byte limits per file (tuf-js's defaults otherwise); snapshot and targets are held to the length their parent signed */
  limits?: Partial<TufLimits>;
  log: Logger;
}

export interface TrustedRole {
  /** the role's ed25519 keys (others cannot check Perch's signatures and are left out) */
  keys: PublicKey[];
  threshold: number;
}

export interface TrustedRoot {
  version: number;
  expires: string;
  roles: Record<string, TrustedRole>;
}

export interface TrustedTarget {
  path: string;
  length: number;
  hashes: Record<string, string>;
  custom: Record<string, unknown>;
}

const rootDocumentSchema = z
  .object({
    signed: z
      .object({
        _type: z.literal('root'),
        version: z.number().int().positive(),
        expires: z.string(),
        keys: z.record(z.string(), z.unknown()),
        roles: z.record(z.string(), z.object({ keyids: z.array(z.string()), threshold: z.number().int().positive() }).loose()),
      })
      .loose(),
    signatures: z.array(z.unknown()),
  })
  .loose();
type RootDocument = z.infer<typeof rootDocumentSchema>;

/**
 * The device's trusted TUF metadata, kept in `dir` and brought up to date
 * from the control plane by tuf-js's Updater (root walk, timestamp, snapshot,
 * targets, each checked as the TUF client workflow says). A fresh Updater per
 * refresh gives each refresh its own reference time. The trusted root also
 * carries Perch's `desired` role, against which desired states are checked.
 */
export class TrustedMetadata {
  private updater: Updater | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: TrustedMetadataOptions,
    private root: TrustedRoot,
  ) {}

  /**
   * Installs the provisioned root on first start (after checking it is signed
   * by its own root keys) and never puts an older root over a newer one that
   * the device already trusts.
   */
  static async open(opts: TrustedMetadataOptions): Promise<TrustedMetadata> {
    await mkdir(opts.dir, { recursive: true });
    await installBootstrapRoot(opts);
    return new TrustedMetadata(opts, await readTrustedRoot(opts.dir));
  }

  trustedRoot(): TrustedRoot {
    return this.root;
  }

  roleKeys(role: string): TrustedRole | undefined {
    return this.root.roles[role];
  }

  /** Checks a desired-state envelope against the trusted root's `desired` keys and threshold. */
  checkDesiredSignatures(envelope: Envelope<unknown>): VerifyResult {
    const role = this.root.roles.desired;
    if (!role) return { ok: false, error: `trusted root version ${this.root.version} has no desired role` };
    return verifyEnvelope(envelope, role.keys, role.threshold);
  }

  /** Fetches and checks new metadata; a refusal is a TrustError whose message names the attack class. */
  refresh(): Promise<void> {
    return this.exclusive(async () => {
      this.updater = null;
      const fetcher = this.opts.fetcher;
      let file: string | undefined = 'root.json (local)';
      let fetched: Buffer | undefined;
      // Remembers which file was being checked, for the reason given on refusal.
      const recording: Fetcher = {
        downloadBytes: async (url, maxLength) => {
          file = url.slice(url.lastIndexOf('/') + 1);
          fetched = undefined;
          fetched = await fetcher.downloadBytes(url, maxLength);
          return fetched;
        },
        downloadFile: (url, maxLength, handler) => fetcher.downloadFile(url, maxLength, handler),
      };
      try {
        const updater = new Updater({ metadataDir: this.opts.dir, metadataBaseUrl: METADATA_BASE_URL, fetcher: recording, config: { ...this.opts.limits } });
        await updater.refresh();
        this.updater = updater;
      } catch (err) {
        const refused = explainTufError(err, file, fetched);
        this.opts.log.warn({ failure: refused.failure, file: refused.file, reason: refused.message }, 'TUF metadata refused');
        throw refused;
      } finally {
        // The root walk persists each new root as it goes, even when a later step fails.
        this.root = await readTrustedRoot(this.opts.dir).catch((err: unknown) => {
          this.opts.log.error({ err: (err as Error).message }, 'cannot re-read the trusted TUF root');
          return this.root;
        });
      }
    });
  }

  /** The target as the trusted targets metadata lists it; refreshes first when there is no fresh metadata. */
  async targetInfo(path: string): Promise<TrustedTarget | undefined> {
    if (!this.updater) await this.refresh();
    const updater = this.updater;
    if (!updater) throw new TrustError('unavailable', undefined, 'no trusted metadata');
    const t = await updater.getTargetInfo(path);
    if (!t) return undefined;
    return { path: t.path, length: t.length, hashes: { ...t.hashes }, custom: { ...t.custom } };
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * Turns what tuf-js throws into one reason. tuf-js wraps snapshot and targets
 * failures in a RuntimeError that keeps only the cause's message, so the
 * message is read as well as the class.
 */
export function explainTufError(err: unknown, file?: string, fetched?: Buffer): TrustError {
  if (err instanceof TrustError) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const detail = raw.replace(/^Unable to load (?:snapshot metadata|targets) error (?:\w*Error: )?/, '');
  const failure = classify(err, detail);
  const version = versionOf(fetched);
  const where = file ? `${file}${version !== undefined ? ` (version ${version})` : ''}: ` : '';
  return new TrustError(failure, file, `${TRUST_FAILURES[failure]}: ${where}${detail}`);
}

function classify(err: unknown, detail: string): TrustFailure {
  if (err instanceof DownloadLengthMismatchError || /more than the \d+ allowed|Max length reached/.test(detail)) return 'endless-data';
  if (err instanceof ExpiredMetadataError || /\bis expired\b/.test(detail)) return 'expired';
  // @tufjs/models' UnsignedMetadataError is not exported; its messages are stable.
  if ((err as Error | undefined)?.constructor?.name === 'UnsignedMetadataError' || /was signed by \d+\/\d+ keys|failed to verify \S+ signature|no signature for key/.test(detail)) {
    return 'signature';
  }
  // Before the rollback test: these version mismatches are BadVersionErrors too.
  if (/doesn't match timestamp|does not match snapshot version|Expected hash|Expected length|Missing \S+ in (?:new )?snapshot/.test(detail)) return 'mix-and-match';
  if (err instanceof BadVersionError || /Expected version \d+, got \d+|is less than current version/.test(detail)) return 'rollback';
  if (err instanceof DownloadError || /not found on the control plane|no answer for|not connected|control plane error|sending the request/.test(detail)) return 'unavailable';
  return 'malformed';
}

function versionOf(bytes: Buffer | undefined): number | undefined {
  if (!bytes) return undefined;
  try {
    const v = (JSON.parse(bytes.toString('utf8')) as { signed?: { version?: unknown } }).signed?.version;
    return typeof v === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

async function readRootFile(path: string): Promise<{ bytes: Buffer; doc: RootDocument } | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`${path}: malformed JSON: ${(err as Error).message}`);
  }
  const parsed = rootDocumentSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${path} is not TUF root metadata: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { bytes, doc: parsed.data };
}

async function installBootstrapRoot(opts: TrustedMetadataOptions): Promise<void> {
  const { dir, bootstrapRootFile, log } = opts;
  const localPath = join(dir, 'root.json');
  let local: Awaited<ReturnType<typeof readRootFile>> = null;
  try {
    local = await readRootFile(localPath);
  } catch (err) {
    // A root that cannot be read would stop every refresh; the provisioned one is the way back.
    log.error({ err: (err as Error).message }, 'local TUF root unreadable; falling back to the provisioned root');
  }
  let boot: Awaited<ReturnType<typeof readRootFile>>;
  try {
    boot = await readRootFile(bootstrapRootFile);
  } catch (err) {
    if (!local) throw new TrustError('malformed', bootstrapRootFile, `provisioned root: ${(err as Error).message}`);
    log.warn({ err: (err as Error).message }, 'provisioned TUF root unreadable; keeping the local one');
    return;
  }
  if (!boot) {
    if (!local) throw new TrustError('unavailable', bootstrapRootFile, `no trusted root: neither ${localPath} nor the provisioned ${bootstrapRootFile} exists`);
    return;
  }
  if (local && boot.doc.signed.version <= local.doc.signed.version) {
    if (boot.doc.signed.version < local.doc.signed.version) {
      log.info({ local: local.doc.signed.version, provisioned: boot.doc.signed.version }, 'keeping the newer local TUF root over the provisioned one');
    }
    return;
  }
  await checkSelfSigned(boot.bytes, opts);
  await writeFileAtomic(localPath, boot.bytes);
  log.info({ version: boot.doc.signed.version, replaced: local?.doc.signed.version ?? null }, 'installed the provisioned TUF root');
}

/** The Updater checks its starting root is signed by that root's own keys; a scratch folder lets it check one before it is installed. */
async function checkSelfSigned(bytes: Buffer, opts: TrustedMetadataOptions): Promise<void> {
  const scratch = await mkdtemp(join(opts.dir, '.provisioned-'));
  try {
    await writeFile(join(scratch, 'root.json'), bytes);
    new Updater({ metadataDir: scratch, metadataBaseUrl: METADATA_BASE_URL, fetcher: opts.fetcher });
  } catch (err) {
    throw explainTufError(err, opts.bootstrapRootFile);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function readTrustedRoot(dir: string): Promise<TrustedRoot> {
  const file = await readRootFile(join(dir, 'root.json'));
  if (!file) throw new TrustError('unavailable', 'root.json', `no trusted root in ${dir}`);
  const { signed } = file.doc;
  const roles: Record<string, TrustedRole> = {};
  for (const [name, role] of Object.entries(signed.roles)) {
    const keys = role.keyids.flatMap((id) => {
      const key = publicKeySchema.safeParse(signed.keys[id]);
      // A key listed under another id than its own would confuse signature checks by key id.
      return key.success && keyIdOf(key.data) === id ? [key.data] : [];
    });
    roles[name] = { keys, threshold: role.threshold };
  }
  return { version: signed.version, expires: signed.expires, roles };
}
