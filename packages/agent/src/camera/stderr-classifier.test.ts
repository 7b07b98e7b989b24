import { describe, expect, it } from 'vitest';
import { classifyStderr, isNoise, tidyStderrLine } from './stderr-classifier.js';

/**
 * stderr captured from real runs with `-loglevel level+warning`: the bundled
 * ffmpeg (4.x, 2018) and Debian's 5.1, against GStreamer's RTSP server, a
 * node HTTP server, TCP servers that hang or send random bytes, files and a
 * missing V4L2 device. Each case: the lines, the kind, the line that shows it.
 */
const CAPTURED: { what: string; lines: string[]; kind: string; line: string }[] = [
  {
    what: 'RTSP without or with wrong credentials',
    lines: ['[rtsp @ 0x36322cc0] [error] method DESCRIBE failed: 401 Unauthorized', '[error] rtsp://user:***@127.0.0.1:42043/cam: Server returned 401 Unauthorized (authorization failed)'],
    kind: 'unauthorized',
    line: '[error] rtsp://user:***@127.0.0.1:42043/cam: Server returned 401 Unauthorized (authorization failed)',
  },
  {
    what: 'HTTP 403',
    lines: ['[http @ 0x226da480] [warning] HTTP error 403 Forbidden', '[error] http://127.0.0.1:8702/403: Server returned 403 Forbidden (access denied)'],
    kind: 'unauthorized',
    line: '[error] http://127.0.0.1:8702/403: Server returned 403 Forbidden (access denied)',
  },
  {
    what: 'RTSP unknown path',
    lines: ['[rtsp @ 0x22079cc0] [error] method DESCRIBE failed: 404 Not Found', '[error] rtsp://127.0.0.1:8554/nope: Server returned 404 Not Found'],
    kind: 'not-found',
    line: '[error] rtsp://127.0.0.1:8554/nope: Server returned 404 Not Found',
  },
  {
    what: 'missing V4L2 device',
    lines: ['[video4linux2,v4l2 @ 0x27513c00] [error] Cannot open video device /dev/video9: No such file or directory', '[error] /dev/video9: No such file or directory'],
    kind: 'not-found',
    line: '[error] /dev/video9: No such file or directory',
  },
  {
    what: 'host name that does not resolve (5.1)',
    lines: ['[tcp @ 0x561b37b235c0] [error] Failed to resolve hostname nosuchhost.invalid: Name or service not known', '[error] rtsp://nosuchhost.invalid/cam: Input/output error'],
    kind: 'not-found',
    line: '[tcp @ 0x561b37b235c0] [error] Failed to resolve hostname nosuchhost.invalid: Name or service not known',
  },
  {
    what: 'closed port',
    lines: ['[tcp @ 0x17d1bec0] [error] Connection to tcp://127.0.0.1:1?timeout=2000000 failed: Connection refused', '[error] rtsp://127.0.0.1:1/cam: Connection refused'],
    kind: 'refused',
    line: '[error] rtsp://127.0.0.1:1/cam: Connection refused',
  },
  {
    what: 'HTTP peer that never answers',
    lines: ['[error] http://127.0.0.1:8600/cam: Connection timed out'],
    kind: 'timeout',
    line: '[error] http://127.0.0.1:8600/cam: Connection timed out',
  },
  {
    what: 'RTSP server frozen mid-stream (5.1)',
    lines: ['[warning] rtsp://127.0.0.1:34307/cam: corrupt decoded frame in stream 0', '[error] rtsp://127.0.0.1:34307/cam: Connection timed out'],
    kind: 'timeout',
    line: '[error] rtsp://127.0.0.1:34307/cam: Connection timed out',
  },
  {
    what: 'codec without a decoder',
    lines: [
      '[matroska,webm @ 0x3a956c40] [warning] Could not find codec parameters for stream 0 (Video: none, none, 64x48): unknown codec',
      "Consider increasing the value for the 'analyzeduration' and 'probesize' options",
      '[error] Decoder (codec none) not found for input stream #0:0',
    ],
    kind: 'unsupported-codec',
    line: '[error] Decoder (codec none) not found for input stream #0:0',
  },
  {
    what: 'random bytes on an RTSP port (4.x)',
    lines: ['[rtsp @ 0x319f5cc0] [warning] CSeq 1 expected, 0 received.', '[error] rtsp://127.0.0.1:8601/cam: Invalid data found when processing input'],
    kind: 'invalid-data',
    line: '[error] rtsp://127.0.0.1:8601/cam: Invalid data found when processing input',
  },
  {
    what: 'random bytes on an HTTP port',
    lines: ['[error] http://127.0.0.1:8601/cam: Invalid data found when processing input'],
    kind: 'invalid-data',
    line: '[error] http://127.0.0.1:8601/cam: Invalid data found when processing input',
  },
  {
    what: 'truncated MP4',
    lines: ['[mov,mp4,m4a,3gp,3g2,mj2 @ 0x15a08b80] [error] moov atom not found', '[error] t3.mp4: Invalid data found when processing input'],
    kind: 'invalid-data',
    line: '[error] t3.mp4: Invalid data found when processing input',
  },
];

describe('ffmpeg stderr classifier', () => {
  it.each(CAPTURED)('$what -> $kind', ({ lines, kind, line }) => {
    expect(classifyStderr(lines)).toEqual({ kind, line });
  });

  it('says nothing about lines that name no cause', () => {
    expect(classifyStderr([])).toBeUndefined();
    expect(classifyStderr(['[http @ 0x27410480] [warning] HTTP error 500 Internal Server Error', '[error] http://127.0.0.1:8702/500: Server returned 5XX Server Error reply'])).toBeUndefined();
  });

  it('a specific cause beats the generic summary after it, whatever the order', () => {
    expect(classifyStderr(['[error] rtsp://h/cam: Invalid data found when processing input', '[rtsp] method DESCRIBE failed: 401 Unauthorized'])?.kind).toBe('unauthorized');
  });

  it('tidies lines for operators and drops noise', () => {
    expect(tidyStderrLine('[tcp @ 0x17d1bec0] [error] Connection to tcp://127.0.0.1:1 failed: Connection refused')).toBe('[tcp] Connection to tcp://127.0.0.1:1 failed: Connection refused');
    expect(tidyStderrLine('[error] /dev/video9: No such file or directory')).toBe('/dev/video9: No such file or directory');
    expect(isNoise('[swscaler @ 0x2ae17c00] [warning] deprecated pixel format used, make sure you did set range correctly')).toBe(true);
    expect(isNoise('[error] /dev/video9: No such file or directory')).toBe(false);
  });
});
