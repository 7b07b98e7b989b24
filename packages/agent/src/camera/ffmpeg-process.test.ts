import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FfmpegProcess } from './ffmpeg-process.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;

describe('one ffmpeg process (real ffmpeg)', () => {
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

  it('runs ffmpeg at the niceness asked for, so inference comes first', async () => {
    const proc = new FfmpegProcess({
      ffmpegPath,
      argv: ['-hide_banner', '-nostdin', '-loglevel', 'level+warning', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=8x6:rate=10', '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'],
      input: 'testsrc2=size=8x6:rate=10',
      frameBytes: 8 * 6 * 3,
      redact: (t) => t,
      nice: 7,
    });
    try {
      // Field 19 of /proc/<pid>/stat, counted after the command name (which may hold spaces).
      const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      expect(nice).toBe(7);
    } finally {
      proc.kill('stop');
      await proc.exited;
    }
  });
});
