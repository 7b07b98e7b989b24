import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir } from '../test-support/harness.js';
import { buildTinyModel, tinyModelTarget } from '../test-support/tiny-model.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import { InferencePipeline, type ModelToRun } from './inference-pipeline.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const TIMED = /^(batching cameras|not batching)/;

describe("batching 'auto' in the pipeline (real onnxruntime workers)", () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  async function model(name: string, gain: number, sha: string): Promise<ModelToRun> {
    const m = buildTinyModel({ batch: 'dynamic', kind: 'logits', gain });
    const modelPath = join(dir.path, `${name}.onnx`);
    await writeFile(modelPath, m.bytes);
    const target = tinyModelTarget(m, '1');
    return { modelPath, target: { ...target, hashes: { sha256: sha.repeat(64) } } };
  }

  it('times each model once: swapping back to a model reuses what was measured', async () => {
    const a = await model('a', 4, 'a');
    const b = await model('b', 8, 'b');
    const log = new CapturedLog('info');
    const aggregator = new WindowAggregator([]);
    const pipeline = new InferencePipeline({ cameras: [], ffmpegPath, intraOpThreads: 1, maxBatch: 4 }, { aggregator, switchModel: (m) => void aggregator.switchModel(m) }, log.logger);
    pipeline.start();
    try {
      for (const next of [a, b, a, b, a]) await pipeline.activate(next);
    } finally {
      await pipeline.stop();
    }
    const timed = log.lines.filter((l) => TIMED.test(String(l.msg)));
    // Once per model, with its figures; the later activations took the answer.
    expect(timed.map((l) => (l.model as { sha256: string }).sha256)).toEqual(['a'.repeat(64), 'b'.repeat(64)]);
    for (const l of timed) {
      expect(l).toMatchObject({ batch: 4 });
      expect(l.framesPerRun).toBe(Number(l.batchPerFrameMs) <= 0.8 * Number(l.singleMs) ? 4 : 1);
    }
  });
});
