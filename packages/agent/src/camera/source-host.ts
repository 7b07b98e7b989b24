import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** A camera host name that could not be resolved; `code` is the resolver's (ENOTFOUND, EAI_AGAIN, …). */
export class HostLookupError extends Error {
  override readonly name = 'HostLookupError';
  constructor(
    readonly host: string,
    readonly code: string,
  ) {
    super(`cannot resolve camera host ${host}: ${code}`);
  }
}

/**
 * `url` with its host name replaced by an address, for an ffmpeg that
 * cannot resolve names itself (see FfmpegCapabilities.resolvesHostNames).
 * IP literals are returned unchanged.
 */
export async function withResolvedHost(url: string): Promise<string> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (host === '' || isIP(host) !== 0) return url;
  let address: { address: string; family: number };
  try {
    address = await lookup(host);
  } catch (err) {
    throw new HostLookupError(host, String((err as NodeJS.ErrnoException).code ?? (err as Error).message));
  }
  u.hostname = address.family === 6 ? `[${address.address}]` : address.address;
  return u.href;
}
