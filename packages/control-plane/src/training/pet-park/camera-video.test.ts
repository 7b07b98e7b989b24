import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, describe, expect, it } from 'vitest';
import { makePetParkVideo, sceneLabels } from './camera-video.js';
import { PET_PARK_LABELS } from './labels.js';

const dir = mkdtempSync(path.join(tmpdir(), 'pet-park-video-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function probe(file: string): string {
  const r = spawnSync(ffmpegInstaller.path, ['-hide_banner', '-i', file], { encoding: 'utf8' });
  return r.stderr;
}

describe('makePetParkVideo', () => {
  it('encodes an H.264 clip whose decoded frames and schedule match the request', async () => {
    const outPath = path.join(dir, 'park.mp4');
    const video = await makePetParkVideo({ outPath, ffmpegPath: ffmpegInstaller.path, seed: 3, width: 160, height: 120, fps: 5, secondsPerScene: 1.2, scenes: 4 });
    expect(video.frameCount).toBe(24);

    const info = probe(outPath);
    expect(info).toMatch(/Video: h264/);
    expect(info).toMatch(/yuv420p/);
    expect(info).toMatch(/160x120/);

    const decoded = spawnSync(ffmpegInstaller.path, ['-v', 'error', '-i', outPath, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(decoded.status).toBe(0);
    expect(decoded.stdout.length).toBe(24 * 160 * 120 * 3);

    expect(video.schedule).toHaveLength(4);
    video.schedule.forEach((entry, i) => {
      expect(entry.startS).toBeCloseTo(i * 1.2, 9);
      expect(entry.endS).toBeCloseTo((i + 1) * 1.2, 9);
    });
    expect(new Set(video.schedule.map((s) => s.label))).toEqual(new Set(PET_PARK_LABELS));
    const written = JSON.parse(readFileSync(video.schedulePath, 'utf8')) as { schedule: unknown; frameCount: number };
    expect(video.schedulePath).toBe(path.join(dir, 'park.schedule.json'));
    expect(written.schedule).toEqual(video.schedule);
    expect(written.frameCount).toBe(24);
  });

  it('cycles through every class in each block of three scenes, reproducibly', () => {
    const labels = sceneLabels(12, 5);
    expect(labels).toEqual(sceneLabels(12, 5));
    for (let i = 0; i < 12; i += 3) expect(new Set(labels.slice(i, i + 3))).toEqual(new Set(PET_PARK_LABELS));
  });

  it('rejects invalid options and reports a broken ffmpeg', async () => {
    await expect(makePetParkVideo({ outPath: path.join(dir, 'odd.mp4'), width: 161 })).rejects.toThrow(/even/);
    await expect(makePetParkVideo({ outPath: path.join(dir, 'frac.mp4'), fps: 3, secondsPerScene: 0.5 })).rejects.toThrow(/whole number of frames/);
    await expect(
      makePetParkVideo({ outPath: path.join(dir, 'nope.mp4'), ffmpegPath: path.join(dir, 'no-such-ffmpeg'), scenes: 1, width: 32, height: 24 }),
    ).rejects.toThrow(/missing or not executable/);
    // A binary that runs but fails, as a system ffmpeg without libx264 would.
    await expect(makePetParkVideo({ outPath: path.join(dir, 'fail.mp4'), ffmpegPath: '/bin/false', scenes: 1, width: 32, height: 24 })).rejects.toThrow(
      /ffmpeg \(\/bin\/false\) failed/,
    );
  });
});
