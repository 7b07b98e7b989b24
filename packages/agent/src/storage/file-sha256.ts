import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** sha256 of a file, streamed so a large model never sits in memory twice. */
export async function fileSha256(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    const buf = chunk as Buffer;
    length += buf.length;
    hash.update(buf);
  }
  return { sha256: hash.digest('hex'), length };
}
