import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { claimTokenSchema, writeFileAtomic } from '@perch/shared';
import { newSecret } from './secret.js';

/**
 * The default claim token, which a box configured with it (`broker.claimTokenFile`)
 * claims its own credentials with: from config, else generated once into
 * the data directory (0600), so a fresh site works out of the box.
 */
export async function resolveDefaultClaimToken(
  configured: { claimToken?: string | undefined; claimTokenFile?: string | undefined },
  generatedFile: string,
): Promise<string> {
  if (configured.claimToken) return configured.claimToken;
  const file = configured.claimTokenFile ?? (existsSync(generatedFile) ? generatedFile : undefined);
  if (file) {
    const token = readFileSync(file, 'utf8').trim();
    const r = claimTokenSchema.safeParse(token);
    if (!r.success) throw new Error(`claim token in ${file}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    return token;
  }
  const token = newSecret();
  mkdirSync(dirname(generatedFile), { recursive: true, mode: 0o700 });
  await writeFileAtomic(generatedFile, `${token}\n`, 0o600);
  return token;
}
