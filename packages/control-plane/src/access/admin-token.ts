import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '@perch/shared';
import type { Logger } from 'pino';
import { newApiTokenSecret, type ApiTokenStore } from '../store/api-token-store.js';

/** A configured secret is kept only as a SHA-256, so it must be too long to guess. */
const MIN_CONFIGURED_LENGTH = 32;

export interface AdminTokenSource {
  secret: string;
  /** `config`: http.adminTokenFile; `bootstrap`: generated into the data directory on first start */
  source: 'config' | 'bootstrap';
  file: string;
}

/**
 * The first admin API token: read from `http.adminTokenFile` when configured,
 * else generated once into `generatedFile` (0600) and read back on later
 * starts, so a fresh control plane can be used at once and never answers
 * unauthenticated.
 */
export async function resolveAdminToken(configuredFile: string | undefined, generatedFile: string): Promise<AdminTokenSource> {
  if (configuredFile) {
    const secret = readFileSync(configuredFile, 'utf8').trim();
    if (secret.length < MIN_CONFIGURED_LENGTH || /\s/.test(secret)) {
      throw new Error(`admin token in ${configuredFile}: needs at least ${MIN_CONFIGURED_LENGTH} characters and no spaces`);
    }
    return { secret, source: 'config', file: configuredFile };
  }
  if (existsSync(generatedFile)) return { secret: readFileSync(generatedFile, 'utf8').trim(), source: 'bootstrap', file: generatedFile };
  const secret = newApiTokenSecret();
  mkdirSync(dirname(generatedFile), { recursive: true, mode: 0o700 });
  await writeFileAtomic(generatedFile, `${secret}\n`, 0o600);
  return { secret, source: 'bootstrap', file: generatedFile };
}

/** Adds the admin token to the store unless it is there; one revoked or demoted since stays so, with a warning. */
export function registerAdminToken(tokens: ApiTokenStore, admin: AdminTokenSource, log: Logger): void {
  const known = tokens.findBySecret(admin.secret);
  if (!known) {
    const record = tokens.insert(admin.secret, { name: admin.source === 'config' ? 'admin (http.adminTokenFile)' : 'admin (first start)', role: 'admin', createdBy: admin.source });
    log.info({ tokenId: record.id, file: admin.file }, 'admin API token registered');
    return;
  }
  if (known.revokedAt !== null || known.role !== 'admin') {
    log.warn({ tokenId: known.id, file: admin.file }, 'the admin token file holds a revoked or non-admin token; create an admin token with `perch-control-plane tokens create --role admin`');
  }
}
