import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** The fleet's shared device token: from config, or generated once into the data directory. */
export function resolveDeviceToken(configured: { token?: string | undefined; tokenFile?: string | undefined }, generatedFile: string): string {
  if (configured.token) return configured.token;
  if (configured.tokenFile) {
    const t = readFileSync(configured.tokenFile, 'utf8').trim();
    if (t.length < 16) throw new Error(`device token in ${configured.tokenFile} is shorter than 16 characters`);
    return t;
  }
  if (existsSync(generatedFile)) return readFileSync(generatedFile, 'utf8').trim();
  const token = randomBytes(24).toString('base64url');
  mkdirSync(dirname(generatedFile), { recursive: true });
  writeFileSync(generatedFile, `${token}\n`, { mode: 0o600 });
  return token;
}
