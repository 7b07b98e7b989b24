import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cameraFromSource } from './camera-source.js';

const thisFile = fileURLToPath(import.meta.url);

describe('--camera sources', () => {
  it('maps each kind of source to the camera config, with its defaults', () => {
    const source = (s: string) => {
      const r = cameraFromSource(s, 5);
      return r.ok ? r.camera.source : r.problems;
    };
    expect(source('synthetic')).toEqual({ kind: 'synthetic', pattern: 'testsrc2' });
    expect(source('synthetic:smptebars')).toEqual({ kind: 'synthetic', pattern: 'smptebars' });
    expect(source('rtsp://10.0.0.7:554/stream1')).toMatchObject({ kind: 'rtsp', url: 'rtsp://10.0.0.7:554/stream1', transport: 'tcp' });
    expect(source('http://10.0.0.8/video.mjpg')).toMatchObject({ kind: 'mjpeg', url: 'http://10.0.0.8/video.mjpg' });
    expect(source('/dev/video0')).toEqual({ kind: 'v4l2', device: '/dev/video0' });
    expect(source(thisFile)).toEqual({ kind: 'file', path: thisFile, loop: true });
    const r = cameraFromSource('synthetic', 12.5);
    expect(r.ok && { id: r.camera.id, fps: r.camera.fps }).toEqual({ id: 'camera', fps: 12.5 });
  });

  it('says what is wrong, under --camera or --fps', () => {
    const problems = (s: string, fps = 5) => {
      const r = cameraFromSource(s, fps);
      return r.ok ? [] : r.problems;
    };
    expect(problems(join(thisFile, 'missing.mp4'))).toEqual([expect.stringMatching(/^--camera: no such file .*missing\.mp4 \(a source is/)]);
    expect(problems('synthetic:plaid')).toEqual([expect.stringMatching(/^--camera: source\.pattern: /)]);
    expect(problems('synthetic', 100)).toEqual([expect.stringMatching(/^--fps: /)]);
  });
});
