import { describe, expect, it } from 'vitest';
import { cameraSchema } from './camera-config.js';
import { ffmpegArgs, ffmpegArgv, rateFilter } from './ffmpeg-args.js';
import { rtspTimeoutOption } from './ffmpeg-capabilities.js';
import { redactSecrets, urlPassword, withCredentials } from './url-credentials.js';

const out = { fps: 5, width: 224, height: 160 };
const source = (raw: unknown) => cameraSchema.parse({ id: 'c', source: raw }).source;

describe('ffmpeg arguments', () => {
  it('paces and loops a file, scales to the model size and writes rgb24', () => {
    const a = ffmpegArgs({ kind: 'file', path: '/v/front.mp4', loop: true }, out);
    expect(a.input).toBe('/v/front.mp4');
    expect(a.inputOptions).toEqual(expect.arrayContaining(['-stream_loop', '-1', '-re']));
    expect(a.outputOptions.join(' ')).toBe(`-an -sn -vf ${rateFilter(5)},scale=224:160 -fps_mode passthrough -pix_fmt rgb24 -f rawvideo`);
    // A phase shifts the wall-clock slots the frames are taken in (a frame placed by its timestamp carried onto the wall clock).
    expect(rateFilter(5, 0.25)).toContain('t+ld(1))*5-0.25)');
    expect(ffmpegArgs({ kind: 'file', path: '/v/f.mp4', loop: true }, { ...out, phase: 0.5 }).outputOptions.join(' ')).toContain('t+ld(1))*5-0.5)');
    // An ffmpeg without severity tags cannot have showinfo's lines told apart: the plain fps filter, no timestamps.
    const plain = ffmpegArgs({ kind: 'file', path: '/v/front.mp4', loop: true }, out, { rtspSocketTimeout: '-timeout', logLevelTags: false, passthroughOption: '-vsync' });
    expect(plain.outputOptions.join(' ')).toBe('-an -sn -vf fps=5,scale=224:160 -pix_fmt rgb24 -f rawvideo');
    expect(ffmpegArgs({ kind: 'file', path: '/v/f.mp4' , loop: false }, out, { rtspSocketTimeout: '-timeout', logLevelTags: true, passthroughOption: '-vsync' }).outputOptions.join(' ')).toContain('-vsync passthrough');
    expect(ffmpegArgs({ kind: 'file', path: '/v/f.mp4', loop: false }, out).inputOptions).not.toContain('-stream_loop');
    expect(ffmpegArgv(a).slice(-3)).toEqual(['-f', 'rawvideo', 'pipe:1']);
  });

  it('decodes on one thread unless told otherwise: frame threading would hold frames back', () => {
    const s = { kind: 'file', path: '/v/a.mp4', loop: true } as const;
    expect(ffmpegArgs(s, out).inputOptions.join(' ')).toContain('-threads 1');
    expect(ffmpegArgs(s, { ...out, decodeThreads: 0 }).inputOptions.join(' ')).toContain('-threads 0');
  });

  it('asks for severity tags on stderr lines only where this ffmpeg knows them', () => {
    const s = { kind: 'synthetic', pattern: 'testsrc2' } as const;
    expect(ffmpegArgs(s, out).inputOptions.join(' ')).toContain('-loglevel level+info');
    expect(ffmpegArgs(s, out, { rtspSocketTimeout: '-timeout', logLevelTags: false, passthroughOption: '-fps_mode' }).inputOptions.join(' ')).toContain('-loglevel warning');
  });

  it('generates a lavfi test pattern at the model size', () => {
    const a = ffmpegArgs({ kind: 'synthetic', pattern: 'testsrc2' }, { fps: 2, width: 64, height: 48 });
    // Generated at a camera's 25 fps, and sampled at 2 like one.
    expect(a.input).toBe('testsrc2=size=64x48:rate=25');
    expect(a.inputOptions.join(' ')).toMatch(/-f lavfi$/);
  });

  it('RTSP: TCP by default, the socket timeout under the name this ffmpeg knows, video only, never -re', () => {
    const s = source({ kind: 'rtsp', url: 'rtsp://10.0.0.7:554/stream1', timeoutMs: 5000 });
    const old = ffmpegArgs(s, out, { rtspSocketTimeout: '-stimeout', logLevelTags: true, passthroughOption: '-fps_mode' });
    expect(old.input).toBe('rtsp://10.0.0.7:554/stream1');
    expect(old.inputOptions.join(' ')).toContain('-rtsp_transport tcp -stimeout 5000000 -allowed_media_types video');
    expect(old.inputOptions).not.toContain('-re');
    const current = ffmpegArgs(s, out, { rtspSocketTimeout: '-timeout', logLevelTags: true, passthroughOption: '-fps_mode' });
    expect(current.inputOptions.join(' ')).toContain('-rtsp_transport tcp -timeout 5000000');
    expect(ffmpegArgs(source({ kind: 'rtsp', url: 'rtsp://h/s', transport: 'udp' }), out).inputOptions.join(' ')).toContain('-rtsp_transport udp -timeout 10000000');
  });

  it('RTSP credentials go into the URL percent-encoded', () => {
    const s = source({ kind: 'rtsp', url: 'rtsp://10.0.0.7/live', username: 'ad min', passwordFile: '/etc/perch/cam.pw' });
    expect(ffmpegArgs(s, out, undefined, { password: 'p@ss:w/rd%' }).input).toBe('rtsp://ad%20min:p%40ss%3Aw%2Frd%25@10.0.0.7/live');
  });

  it('MJPEG: multipart demuxer, wall-clock timestamps (the stream has none), HTTP timeout in microseconds', () => {
    const a = ffmpegArgs(source({ kind: 'mjpeg', url: 'http://10.0.0.8/video.mjpg', timeoutMs: 3000 }), out);
    expect(a.input).toBe('http://10.0.0.8/video.mjpg');
    expect(a.inputOptions.join(' ')).toContain('-timeout 3000000 -use_wallclock_as_timestamps 1 -f mpjpeg');
    expect(a.inputOptions).not.toContain('-re');
  });

  it('V4L2: the driver mode asked for, the device as input', () => {
    const a = ffmpegArgs(source({ kind: 'v4l2', device: '/dev/video2', inputFormat: 'mjpeg', width: 1280, height: 720, framerate: 15 }), out);
    expect(a.input).toBe('/dev/video2');
    expect(a.inputOptions.join(' ')).toContain('-f v4l2 -input_format mjpeg -framerate 15 -video_size 1280x720');
    const bare = ffmpegArgs(source({ kind: 'v4l2', device: '/dev/video0' }), out);
    expect(bare.inputOptions.join(' ')).toMatch(/-f v4l2$/);
    expect(bare.outputOptions.join(' ')).toContain('scale=224:160');
  });
});

describe('camera source config', () => {
  it('fills defaults', () => {
    expect(cameraSchema.parse({ id: 'gate', source: { kind: 'rtsp', url: 'rtsp://cam/s' } })).toEqual({
      id: 'gate',
      fps: 5,
      stallTimeoutMs: 20_000,
      source: { kind: 'rtsp', url: 'rtsp://cam/s', transport: 'tcp', timeoutMs: 10_000 },
    });
  });

  it.each([
    [{ kind: 'rtsp', url: 'http://cam/s' }, 'source.url'],
    [{ kind: 'rtsp', url: 'rtsp://cam/s', transport: 'quic' }, 'source.transport'],
    [{ kind: 'rtsp', url: 'rtsp://cam/s', passwordFile: 'pw' }, 'source.username'],
    [{ kind: 'rtsp', url: 'rtsp://u:p@cam/s', username: 'u' }, 'source.url'],
    [{ kind: 'mjpeg', url: 'rtsp://cam/s' }, 'source.url'],
    [{ kind: 'v4l2', device: 'video0' }, 'source.device'],
    [{ kind: 'v4l2', device: '/dev/video0', width: 640 }, 'source.height'],
    [{ kind: 'v4l2', device: '/dev/video0', inputFormat: 'mjpeg; rm -rf /' }, 'source.inputFormat'],
  ])('refuses %j at %s', (raw, path) => {
    const r = cameraSchema.safeParse({ id: 'c', source: raw });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toContain(path);
  });

  it('refuses a stall timeout under a second', () => {
    expect(cameraSchema.safeParse({ id: 'c', source: { kind: 'synthetic' }, stallTimeoutMs: 10 }).success).toBe(false);
  });
});

describe('ffmpeg capabilities', () => {
  it('picks the RTSP socket timeout option from the demuxer help of each version', () => {
    // ffmpeg 4.x (the bundled build): -timeout is the listen timeout.
    const v4 = [
      '  -timeout           <int>        .D....... set maximum timeout (in seconds) to wait for incoming connections (-1 is infinite, imply flag listen) (deprecated, use listen_timeout) (from INT_MIN to INT_MAX) (default -1)',
      '  -stimeout          <int>        .D....... set timeout (in microseconds) of socket TCP I/O operations (from INT_MIN to INT_MAX) (default 0)',
    ].join('\n');
    // ffmpeg 5.1 (Debian 12).
    const v5 = '  -timeout           <int64>      .D......... set timeout (in microseconds) of socket I/O operations (from INT_MIN to I64_MAX) (default 0)';
    expect(rtspTimeoutOption(v4)).toBe('-stimeout');
    expect(rtspTimeoutOption(v5)).toBe('-timeout');
    expect(rtspTimeoutOption('')).toBe('-timeout');
  });
});

describe('camera credentials in URLs', () => {
  it('masks passwords of URLs and known secrets, as written and percent-encoded', () => {
    expect(redactSecrets('[error] rtsp://admin:hunter22@10.0.0.7/live: Connection refused')).toBe('[error] rtsp://admin:***@10.0.0.7/live: Connection refused');
    expect(redactSecrets('rtsp://10.0.0.7/live?token=s3cr@t and s3cr%40t', ['s3cr@t'])).toBe('rtsp://10.0.0.7/live?token=*** and ***');
    expect(withCredentials('rtsp://10.0.0.7/live', undefined, undefined)).toBe('rtsp://10.0.0.7/live');
    expect(urlPassword('rtsp://a:b%40c@h/x')).toBe('b%40c');
    expect(urlPassword('rtsp://h/x')).toBeUndefined();
  });
});
