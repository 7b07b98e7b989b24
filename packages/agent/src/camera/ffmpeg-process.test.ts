import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { describe, expect, it } from 'vitest';
import { FaultServer } from '../test-support/fault-servers.js';
import { FfmpegProcess } from './ffmpeg-process.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;

describe('one ffmpeg process (real ffmpeg)', () => {
  it('is ended when it has printed its fatal line about the input but hangs on in cleanup', async () => {
    // A real hang: with -rw_timeout on an RTSP peer that never answers, ffmpeg 4.x and 5.1 both print
    // "<input>: Invalid data found" after a second and then wait for ever.
    const server = await FaultServer.start('silent');
    const input = `rtsp://127.0.0.1:${server.port}/cam`;
    try {
      const proc = new FfmpegProcess({
        ffmpegPath,
        argv: ['-hide_banner', '-nostdin', '-loglevel', 'level+warning', '-rw_timeout', '1000000', '-rtsp_transport', 'tcp', '-i', input, '-f', 'null', '-'],
        input,
        frameBytes: 3,
        redact: (t) => t,
      });
      const exit = await proc.exited;
      expect(exit.killedFor).toBe('fatal');
      expect(exit.stderr.at(-1)).toBe(`${input}: Invalid data found when processing input`);
    } finally {
      await server.stop();
    }
  });

  it('cuts whole frames from stdout and settles when ffmpeg ends by itself', async () => {
    const frames: Uint8Array[] = [];
    const proc = new FfmpegProcess({
      ffmpegPath,
      argv: ['-hide_banner', '-nostdin', '-loglevel', 'level+warning', '-f', 'lavfi', '-i', 'testsrc2=size=8x6:rate=10', '-frames:v', '4', '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'],
      input: 'testsrc2=size=8x6:rate=10',
      frameBytes: 8 * 6 * 3,
      redact: (t) => t,
    });
    proc.on('frame', (f) => frames.push(f));
    const exit = await proc.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.killedFor).toBeUndefined();
    expect(frames).toHaveLength(4);
  });
});
