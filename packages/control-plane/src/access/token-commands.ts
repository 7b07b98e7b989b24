import type { Command } from 'commander';
import { formatZodError } from '@perch/shared';
import { z } from 'zod';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { ApiTokenStore } from '../store/api-token-store.js';
import { AuditLogStore, type AuditActor } from '../store/audit-log-store.js';
import { openDatabase, type Db } from '../store/database.js';
import { controlPlaneDatabaseFile } from '../store/database-backup.js';
import { apiTokenView } from './api-token-view.js';
import { roleSchema } from './roles.js';

const CLI: AuditActor = { kind: 'cli', tokenId: null, name: 'cli' };
const nameSchema = z.string().trim().min(1).max(100);

function parseArg<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`${what}: ${formatZodError(r.error)}`);
  return r.data;
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Runs `use` on the control plane's database, found from its config as `serve` finds it; safe beside a running control plane (WAL). */
function withStores<T>(configFile: string | undefined, use: (s: { tokens: ApiTokenStore; audit: AuditLogStore }) => T): T {
  const config = loadControlPlaneConfig({ file: configFile });
  const db: Db = openDatabase(controlPlaneDatabaseFile(config.dataDir));
  try {
    return use({ tokens: new ApiTokenStore(db), audit: new AuditLogStore(db) });
  } finally {
    db.close();
  }
}

/**
 * `perch-control-plane tokens create | list | revoke`: API token management
 * on the data directory, for the operator at the box (and the way back in
 * when no admin token is at hand). Changes are audited with actor `cli`.
 */
export function addTokenCommands(program: Command): void {
  const tokens = program.command('tokens').description('API tokens; roles viewer < operator < admin');

  tokens
    .command('create')
    .description('create a token and print it with its secret (shown this once)')
    .requiredOption('--name <name>', 'what the token is for')
    .requiredOption('--role <role>', 'viewer, operator or admin')
    .option('-c, --config <file>', 'YAML config file')
    .action((opts: { name: string; role: string; config?: string }) => {
      const name = parseArg(nameSchema, opts.name, '--name');
      const role = parseArg(roleSchema, opts.role, '--role');
      withStores(opts.config, ({ tokens: store, audit }) => {
        const { record, secret } = store.create({ name, role, createdBy: 'cli' });
        audit.record({ at: Date.now(), actor: CLI, action: 'tokens create', path: '', target: { tokenId: record.id }, status: null, outcome: 'ok', remoteAddress: null, summary: { name, role } });
        print({ ...apiTokenView(record), token: secret });
      });
    });

  tokens
    .command('list')
    .description('list tokens (never their secrets)')
    .option('--all', 'include revoked tokens')
    .option('-c, --config <file>', 'YAML config file')
    .action((opts: { all?: boolean; config?: string }) => {
      withStores(opts.config, ({ tokens: store }) => {
        print(store.page({ after: null, limit: Number.MAX_SAFE_INTEGER, includeRevoked: opts.all === true }).map(apiTokenView));
      });
    });

  tokens
    .command('revoke <id>')
    .description('revoke a token: refused from its next request on')
    .option('-c, --config <file>', 'YAML config file')
    .action((id: string, opts: { config?: string }) => {
      withStores(opts.config, ({ tokens: store, audit }) => {
        const revoked = store.revoke(id);
        if (!revoked) throw new Error(`no API token ${id}`);
        audit.record({ at: Date.now(), actor: CLI, action: 'tokens revoke', path: '', target: { tokenId: id }, status: null, outcome: 'ok', remoteAddress: null, summary: null });
        print(apiTokenView(revoked));
      });
    });
}
