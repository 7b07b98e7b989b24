import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { parseRolloutSpecYaml } from './rollout-spec.js';

interface ApiOptions {
  config?: string;
  api?: string;
  tokenFile?: string;
}

interface ApiAccess {
  base: string;
  token: string;
}

/**
 * Where the API is and which token to use: `--api` / PERCH_API_URL, else the
 * config's HTTP port on loopback; `--token-file` / PERCH_API_TOKEN, else the
 * admin token the control plane wrote into its data directory.
 */
function access(opts: ApiOptions): ApiAccess {
  const config = loadControlPlaneConfig({ file: opts.config });
  const base = (opts.api ?? process.env.PERCH_API_URL ?? `http://127.0.0.1:${config.http.port}/api/v1`).replace(/\/$/, '');
  const fromEnv = process.env.PERCH_API_TOKEN;
  const file = opts.tokenFile ?? config.http.adminTokenFile ?? join(config.dataDir, 'secrets', 'admin-token');
  const token = !opts.tokenFile && fromEnv ? fromEnv : readFileSync(file, 'utf8').trim();
  return { base, token };
}

async function call(a: ApiAccess, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${a.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${a.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // not JSON: shown as text
  }
  if (!res.ok) {
    const err = (value as { error?: { code?: string; message?: string; field?: string } }).error;
    throw new Error(err ? `${res.status} ${err.code}: ${err.message}${err.field ? ` (field ${err.field})` : ''}` : `${res.status}: ${text}`);
  }
  return value;
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

function withApiOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', "the control plane's YAML config: its HTTP port and data directory (admin token)")
    .option('--api <url>', 'the API base, e.g. http://cp:8080/api/v1 (or PERCH_API_URL)')
    .option('--token-file <file>', 'a file with an operator API token (or PERCH_API_TOKEN)');
}

/** `perch-control-plane rollout apply | list | show | pause | resume | promote | abort | rollback`, through the REST API. */
export function addRolloutCommands(program: Command): void {
  const rollout = program.command('rollout').description('staged rollouts with health gates, through the REST API');

  withApiOptions(rollout.command('apply <file>').description('start the rollout a YAML spec describes (checked here first)')).action(async (file: string, opts: ApiOptions) => {
    // Checked here first, so a typo is named before anything is sent.
    const spec = parseRolloutSpecYaml(readFileSync(file, 'utf8'), file);
    print(await call(access(opts), 'POST', '/rollouts', spec));
  });

  withApiOptions(rollout.command('list').description('rollouts, newest first')).action(async (opts: ApiOptions) => {
    print(await call(access(opts), 'GET', '/rollouts'));
  });

  withApiOptions(rollout.command('show <id>').description('a rollout with its stages, gate values and history')).action(async (id: string, opts: ApiOptions) => {
    print(await call(access(opts), 'GET', `/rollouts/${encodeURIComponent(id)}`));
  });

  for (const action of ['pause', 'resume', 'promote', 'abort', 'rollback'] as const) {
    withApiOptions(rollout.command(`${action} <id>`).description(`${action} a rollout`).option('--reason <text>', 'recorded in the history')).action(
      async (id: string, opts: ApiOptions & { reason?: string }) => {
        print(await call(access(opts), 'POST', `/rollouts/${encodeURIComponent(id)}/${action}`, opts.reason ? { reason: opts.reason } : {}));
      },
    );
  }
}
