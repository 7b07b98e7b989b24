import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { cameraWindowSchema } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CameraConfig } from '../camera/camera-config.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { MjpegTestServer, smpteJpeg } from '../test-support/mjpeg-server.js';
import { buildTinyModel, tinyModelTarget } from '../test-support/tiny-model.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import { InferencePipeline } from './inference-pipeline.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;

describe('camera supervision in the pipeline (real ffmpeg, real HTTP camera, real onnxruntime)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let server: MjpegTestServer;
  beforeAll(async () => {
    dir = await tempDir();
    server = await MjpegTestServer.start({ frames: [await smpteJpeg(ffmpegPath, '160x120')], intervalMs: 50 });
  });
  afterAll(async () => {
    await server.stop();
    await dir.remove();
  });

  it('stalls and restarts reach the telemetry window and the reported state, and survive a model switch', async () => {
    const models = await Promise.all(
      [8, 16].map(async (size) => {
        const m = buildTinyModel({ width: size, height: size });
        const modelPath = join(dir.path, `tiny-${size}.onnx`);
        await writeFile(modelPath, m.bytes);
        return { modelPath, target: tinyModelTarget(m, String(size)) };
      }),
    );
    const camera: CameraConfig = { id: 'door', fps: 10, stallTimeoutMs: 1000, source: { kind: 'mjpeg', url: server.url(), timeoutMs: 5000 } };
    const aggregator = new WindowAggregator([camera.id]);
    const pipeline = new InferencePipeline(
      { cameras: [camera], ffmpegPath, intraOpThreads: 1, cameraRestart: { minMs: 50, maxMs: 200 } },
      { aggregator, switchModel: (model) => void aggregator.switchModel(model) },
      new CapturedLog('warn').logger,
    );
    const door = () => pipeline.cameraStates()[0];
    pipeline.start();
    try {
      const first = models[0];
      const second = models[1];
      if (!first || !second) throw new Error('two models expected');
      await pipeline.activate(first);
      await waitFor('online', () => door()?.state === 'online');
      aggregator.close();

      server.paused = true;
      await waitFor('a stall and a restart', () => {
        const s = door();
        return s !== undefined && (s.stalls ?? 0) >= 1 && s.restarts >= 1;
      });
      server.paused = false;
      await waitFor('frames again', () => door()?.state === 'degraded');
      const window = aggregator.close();
      const cam = window?.cameras.find((c) => c.cameraId === 'door');
      expect(cameraWindowSchema.parse(cam)).toBeTruthy();
      expect(cam?.health).toMatchObject({ state: 'degraded', errorKind: 'stalled' });
      expect(cam?.health?.stalls).toBeGreaterThanOrEqual(1);
      expect(cam?.health?.restarts).toBeGreaterThanOrEqual(1);
      expect(cam?.health?.lastError).toMatch(/^no frame for/);

      // The next window counts afresh but keeps the state.
      const quiet = aggregator.close()?.cameras.find((c) => c.cameraId === 'door');
      expect(quiet?.health).toEqual({ state: 'degraded', restarts: 0, stalls: 0 });

      // Another input size starts the camera afresh; the counters keep counting since the agent started.
      const before = door();
      await pipeline.activate(second);
      await waitFor('frames at the new size', () => door()?.state !== 'starting' && (door()?.framesPerSecond ?? 0) > 0);
      expect(door()?.restarts).toBe(before?.restarts);
      expect(door()?.stalls).toBe(before?.stalls);
    } finally {
      await pipeline.stop();
    }
    expect(door()).toMatchObject({ state: 'offline', lastError: 'no model active' });
  });
});
