import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CameraConfig } from '../camera/camera-config.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { buildTinyModel, tinyModelTarget } from '../test-support/tiny-model.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import type { FrameResult } from './frame-scheduler.js';
import { InferencePipeline } from './inference-pipeline.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const FPS = 2;
const INTERVAL_MS = 1000 / FPS;

describe('cameras sharing a model take their frames in turn (real ffmpeg)', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  it('four cameras at the same rate deliver a quarter interval apart, not in the same instant', async () => {
    const m = buildTinyModel();
    const modelPath = join(dir.path, 'tiny.onnx');
    await writeFile(modelPath, m.bytes);
    const target = tinyModelTarget(m, '1');
    const ids = ['north', 'east', 'south', 'west'];
    const cameras: CameraConfig[] = ids.map((id) => ({ id, fps: FPS, stallTimeoutMs: 5000, source: { kind: 'synthetic', pattern: 'testsrc2' } }) as CameraConfig);
    const aggregator = new WindowAggregator(ids);
    const pipeline = new InferencePipeline({ cameras, ffmpegPath, intraOpThreads: 1 }, { aggregator, switchModel: (model) => void aggregator.switchModel(model) }, new CapturedLog('warn').logger);
    const arrivals: Record<string, number[]> = Object.fromEntries(ids.map((id) => [id, []]));
    pipeline.on('result', (r: FrameResult) => arrivals[r.cameraId]?.push(r.arrivedAt));
    pipeline.start();
    try {
      await pipeline.activate({ modelPath, target });
      await waitFor('six frames from each camera', () => ids.every((id) => (arrivals[id]?.length ?? 0) >= 6), 30_000);
    } finally {
      await pipeline.stop();
    }
    // Where camera k's frames fall within the first camera's interval: ~k/4 of it when spread, ~0 (or ~1) when in step.
    const first = arrivals.north ?? [];
    ids.slice(1).forEach((id, i) => {
      const phases = (arrivals[id] ?? []).slice(2).map((t) => {
        const before = Math.max(...first.filter((e) => e <= t), Number.NEGATIVE_INFINITY);
        return Number.isFinite(before) ? (t - before) / INTERVAL_MS : Number.NaN;
      });
      const known = phases.filter((p) => !Number.isNaN(p)).sort((a, b) => a - b);
      expect(known.length).toBeGreaterThanOrEqual(3);
      const median = known[Math.floor(known.length / 2)] ?? Number.NaN;
      expect(Math.abs(median - (i + 1) / 4), `${id}: median phase ${median.toFixed(2)}, want ${(i + 1) / 4}`).toBeLessThan(0.12);
    });
  });
});
