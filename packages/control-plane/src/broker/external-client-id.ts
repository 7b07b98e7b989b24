import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '@perch/shared';

/** Printable, and within what every broker takes as a client id. */
const CLIENT_ID = /^[A-Za-z0-9._-]{8,128}$/;

/**
 * The control plane's MQTT client id on an external broker: stable across
 * restarts, so its persistent session (and the messages queued in it while
 * it was away) is found again; and secret, because Mosquitto 2.0 resumes a
 * persistent session for whoever brings its client id, whatever the
 * username, and while someone else holds it nothing queued reaches the
 * control plane. So, like a password: made once from 128 random bits and
 * kept in the data folder (0600), unless the config names one.
 */
export async function resolveExternalClientId(configured: string | undefined, file: string): Promise<string> {
  if (configured !== undefined) return configured;
  let stored: string | null = null;
  try {
    stored = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (stored !== null) {
    if (!CLIENT_ID.test(stored)) throw new Error(`${file}: not an MQTT client id this control plane made (8-128 of A-Z a-z 0-9 . _ -)`);
    return stored;
  }
  const made = `perch-cp-${randomBytes(16).toString('hex')}`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${made}\n`, 0o600);
  return made;
}
