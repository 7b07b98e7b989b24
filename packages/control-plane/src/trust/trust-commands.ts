import type { Command } from 'commander';
import { formatZodError } from '@perch/shared';
import { z } from 'zod';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { createLogger } from '../logger.js';
import { createKeyFile, readKeyFile } from './tuf-keys.js';
import { ONLINE_ROLES, TufRepository, tufRepositoryPaths } from './tuf-repository.js';

const keyIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'a key id is 32-byte lowercase hex');
const thresholdSchema = z.coerce.number().int().min(1);
const rolesSchema = z.array(z.enum(ONLINE_ROLES));

function parseArg<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`${what}: ${formatZodError(r.error)}`);
  return r.data;
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

async function openRepository(configFile: string | undefined): Promise<TufRepository> {
  const config = loadControlPlaneConfig({ file: configFile });
  // Warnings only: stdout carries the command's JSON answer.
  const repo = new TufRepository({ ...tufRepositoryPaths(config.dataDir), log: createLogger('warn') });
  await repo.open({ create: false });
  return repo;
}

/**
 * The operator's TUF commands. Root keys are files the operator brings to
 * the command (kept offline in production); the control plane's data folder
 * is found from its config, as `serve` finds it. A running control plane
 * picks up a root changed here at its next change or expiry check; to change
 * an online key of a running control plane, its REST API is the way.
 */
export function addTrustCommands(program: Command): void {
  const keys = program.command('keys').description('TUF signing keys');

  keys
    .command('create <file>')
    .description('write a new Ed25519 key pair to <file> (PKCS#8 PEM, mode 0600) and print its key id and public key')
    .action(async (file: string) => {
      const key = await createKeyFile(file);
      print({ keyid: key.keyid, publicKey: key.publicKey, file });
    });

  keys
    .command('revoke <keyid>')
    .description('sign a new root without this key; an online role it belonged to gets a fresh key and its metadata is re-signed')
    .option('-c, --config <file>', 'YAML config file')
    .option('--root-key <files...>', 'root key files that sign the new root (besides any in <dataDir>/keys/root)')
    .action(async (keyid: string, opts: { config?: string; rootKey?: string[] }) => {
      const id = parseArg(keyIdSchema, keyid, 'keyid');
      const signers = await Promise.all((opts.rootKey ?? []).map(readKeyFile));
      const repo = await openRepository(opts.config);
      print(await repo.revokeKey(id, signers));
    });

  const root = program.command('root').description('TUF root metadata');

  root
    .command('show')
    .description('print the current root.json: the file devices are provisioned with')
    .option('-c, --config <file>', 'YAML config file')
    .action(async (opts: { config?: string }) => {
      const config = loadControlPlaneConfig({ file: opts.config });
      const repo = new TufRepository({ ...tufRepositoryPaths(config.dataDir), log: createLogger('warn') });
      print(await repo.currentRoot());
    });

  root
    .command('rotate')
    .description('sign root version N+1 with the threshold of the current root keys and of the new ones (TUF rotation)')
    .option('-c, --config <file>', 'YAML config file')
    .option('--old-key <files...>', 'current root key files (their threshold must sign)')
    .option('--new-key <files...>', 'the new root keys (they sign too); default: keep the current root keys')
    .option('--threshold <n>', 'signatures the new root role needs; default: the current threshold')
    .option('--rotate <roles...>', `online roles that get a fresh key: ${ONLINE_ROLES.join(', ')}`)
    .action(async (opts: { config?: string; oldKey?: string[]; newKey?: string[]; threshold?: string; rotate?: string[] }) => {
      const threshold = opts.threshold === undefined ? undefined : parseArg(thresholdSchema, opts.threshold, '--threshold');
      const rotate = parseArg(rolesSchema, opts.rotate ?? [], '--rotate');
      const oldKeys = await Promise.all((opts.oldKey ?? []).map(readKeyFile));
      const newKeys = opts.newKey ? await Promise.all(opts.newKey.map(readKeyFile)) : undefined;
      const repo = await openRepository(opts.config);
      print(
        await repo.rotateRoot({
          signers: [...oldKeys, ...(newKeys ?? [])],
          ...(newKeys ? { rootKeys: newKeys.map((k) => k.publicKey) } : {}),
          ...(threshold !== undefined ? { rootThreshold: threshold } : {}),
          rotate,
        }),
      );
    });
}
