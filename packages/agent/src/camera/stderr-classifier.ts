import type { CameraErrorKind } from '@perch/shared';

/**
 * Why ffmpeg gave up, read from its stderr. Ordered: the first kind whose
 * pattern matches any line wins, so a specific cause ("401 Unauthorized")
 * beats the generic summary ffmpeg prints after it ("Invalid data found").
 * The tests hold lines captured from real ffmpeg runs (the bundled 4.x and
 * Debian's 5.1) against real servers, files and devices.
 */
export const STDERR_CLASSES: readonly { kind: CameraErrorKind; pattern: RegExp }[] = [
  // RTSP/HTTP 401/403; a V4L2 device the agent's user may not open.
  { kind: 'unauthorized', pattern: /\b40[13] (Unauthorized|Forbidden)\b|authori[sz]ation failed|Permission denied/i },
  // RTSP/HTTP 404, RTSP 454; a missing file or device; a host name that does not resolve.
  { kind: 'not-found', pattern: /\b404 Not Found\b|\b454 Session Not Found\b|No such file or directory|No such device\b|Name or service not known|Failed to resolve hostname/i },
  // A V4L2 device another process holds refuses us as a closed port does.
  { kind: 'refused', pattern: /Connection refused|Device or resource busy/i },
  // A host that does not answer is, to the installer, a camera that times out.
  { kind: 'timeout', pattern: /timed out|\b408 Request Time-?out\b|No route to host|Network is unreachable|Host is unreachable/i },
  { kind: 'unsupported-codec', pattern: /Decoder \([^)]*\) not found|unknown codec|Unsupported codec|codec not currently supported/i },
  // The filter graph could not be rebuilt for a new input size.
  { kind: 'resolution-changed', pattern: /Error reinitializing filters/i },
  { kind: 'invalid-data', pattern: /Invalid data found when processing input|moov atom not found|CSeq \d+ expected/i },
];

/** Lines that say nothing about a failure and would only push the useful ones out of the ring. */
const NOISE = /deprecated pixel format used|Last message repeated|corrupt decoded frame/i;

export function isNoise(line: string): boolean {
  return NOISE.test(line);
}

/**
 * One stderr line as an operator should read it: without the `-loglevel
 * level+…` tag and without the context's memory address.
 */
export function tidyStderrLine(line: string): string {
  return line
    .replace(/\[(?:trace|debug|verbose|info|warning|error|fatal|panic)\] /g, '')
    .replace(/ @ 0x[0-9a-f]+\]/gi, ']')
    .trim();
}

export interface StderrCause {
  kind: CameraErrorKind;
  /** the last line that shows the cause */
  line: string;
}

export function classifyStderr(lines: readonly string[]): StderrCause | undefined {
  for (const { kind, pattern } of STDERR_CLASSES) {
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i];
      if (line !== undefined && pattern.test(line)) return { kind, line };
    }
  }
  return undefined;
}
