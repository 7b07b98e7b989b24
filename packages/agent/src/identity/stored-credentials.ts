import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@perch/shared';
import { z } from 'zod';

/** The box's own MQTT credentials once claimed: `<dataDir>/secrets/mqtt-credentials`, 0600. */
const storedCredentialsSchema = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  issuedAt: z.number().int().nonnegative(),
});
export type StoredCredentials = z.infer<typeof storedCredentialsSchema>;

export function storedCredentialsPath(dataDir: string): string {
  return join(dataDir, 'secrets', 'mqtt-credentials');
}

/** null when the box has none; throws when the file is there but unreadable or malformed. */
export async function readStoredCredentials(dataDir: string): Promise<StoredCredentials | null> {
  const file = storedCredentialsPath(dataDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: malformed JSON: ${(err as Error).message}`);
  }
  const r = storedCredentialsSchema.safeParse(raw);
  if (!r.success) throw new Error(`${file}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Atomic (temp, fsync, rename), created 0600 in a 0700 folder: a power cut leaves the old file or the new, never a torn secret. */
export async function writeStoredCredentials(dataDir: string, credentials: StoredCredentials): Promise<void> {
  await mkdir(join(dataDir, 'secrets'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(storedCredentialsPath(dataDir), `${JSON.stringify(credentials)}\n`, 0o600);
}
