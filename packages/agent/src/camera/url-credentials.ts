/**
 * Camera credentials travel to ffmpeg only inside the URL it opens (the one
 * way RTSP/HTTP inputs take them). Everywhere else (logs, reported state,
 * telemetry) a URL's password is replaced, because ffmpeg prints the URL
 * verbatim in its errors.
 */

const MASK = '***';

/**
 * `url` with `username`/`password` as its userinfo, percent-encoded (ffmpeg
 * decodes them; checked with 4.x and 5.x against a real RTSP server).
 */
export function withCredentials(url: string, username: string | undefined, password: string | undefined): string {
  if (username === undefined && password === undefined) return url;
  const u = new URL(url);
  // The setters leave '%' alone, so encoding first is neither lost nor doubled.
  u.username = encodeURIComponent(username ?? '');
  u.password = encodeURIComponent(password ?? '');
  return u.href;
}

/** The password of a URL's userinfo, as written (percent-encoded), or undefined. */
export function urlPassword(url: string): string | undefined {
  try {
    const p = new URL(url).password;
    return p === '' ? undefined : p;
  } catch {
    return undefined;
  }
}

const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*):([^/@\s]*)@/gi;

/**
 * Masks credentials in any text: the password of every `scheme://user:pass@`
 * and each known secret, as written and percent-encoded.
 */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:${MASK}@`);
  for (const s of secrets) {
    if (s.length < 3) continue; // masking "a" everywhere would garble every message
    for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join(MASK);
  }
  return out;
}
