import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBuildDemoModelCli } from './build-demo-model-cli.js';
import { buildDemoModel, type DemoModel } from './demo-model.js';
import { argmaxRows, evaluate } from './evaluation.js';
import { trainedModelFileSchema } from './model-metadata.js';
import { onnx } from './onnx-graph/onnx-proto.js';
import { makePetParkVideo } from './pet-park/camera-video.js';
import { generateDataset } from './pet-park/dataset.js';
import { PET_PARK_LABELS } from './pet-park/labels.js';
import { imagesToNchw } from './preprocess.js';
import { scoreVideo } from './score-video.js';

const dir = mkdtempSync(path.join(tmpdir(), 'pet-park-model-'));
const modelDir = path.join(dir, 'model');
let built: DemoModel;
let session: ort.InferenceSession;

beforeAll(async () => {
  built = await buildDemoModel({ outDir: modelDir });
  session = await ort.InferenceSession.create(readFileSync(built.modelPath));
});

afterAll(async () => {
  await session?.release();
  rmSync(dir, { recursive: true, force: true });
});

async function classify(images: Parameters<typeof imagesToNchw>[0]): Promise<Float32Array> {
  const m = built.metadata;
  const input = new ort.Tensor('float32', imagesToNchw(images, m.input.width, m.input.height, m.normalization), [images.length, 3, m.input.height, m.input.width]);
  const out = (await session.run({ [m.input.name]: input }))[m.output.name];
  expect(out?.dims).toEqual([images.length, PET_PARK_LABELS.length]);
  return out?.data as Float32Array;
}

describe('buildDemoModel', () => {
  it('writes the ONNX model and its metadata JSON', () => {
    expect(built.cached).toBe(false);
    const json: unknown = JSON.parse(readFileSync(built.metadataPath, 'utf8'));
    const m = trainedModelFileSchema.parse(json);
    expect(m).toMatchObject({
      name: 'pet-park-classifier',
      version: '1.0.0',
      labels: ['empty', 'cat', 'dog'],
      input: { name: 'input', width: 64, height: 64, layout: 'NCHW', channelOrder: 'RGB' },
      normalization: { scale: 1 / 255 },
      output: { name: 'probabilities', kind: 'probabilities' },
      training: { seed: 1, trainCount: 1800, testCount: 600 },
    });
    expect(m.training.testSeed).not.toBe(m.training.seed);
    expect(m.training.confusion.flat().reduce((a, b) => a + b, 0)).toBe(600);

    const proto = onnx.ModelProto.decode(readFileSync(built.modelPath));
    const dims = proto.graph?.input?.[0]?.type?.tensorType?.shape?.dim?.map((d) => d.dimParam || Number(d.dimValue));
    expect(dims).toEqual(['N', 3, 64, 64]);
    expect(proto.graph?.output?.[0]?.name).toBe('probabilities');
  });

  it('loads in onnxruntime and returns probabilities for batch 1 and batch 4', async () => {
    expect(session.inputNames).toEqual(['input']);
    expect(session.outputNames).toEqual(['probabilities']);
    const images = (await generateDataset({ count: 4, seed: 777, width: 64, height: 64 })).map((s) => s.image);
    const single = await classify(images.slice(0, 1));
    const batch = await classify(images);
    for (let n = 0; n < 4; n++) {
      const row = [0, 1, 2].map((k) => batch[n * 3 + k] ?? NaN);
      expect(row.every((p) => p >= 0 && p <= 1)).toBe(true);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    }
    [0, 1, 2].forEach((k) => expect(batch[k]).toBeCloseTo(single[k] ?? NaN, 5));
  });

  it('beats chance clearly on held-out images, as reported and when re-measured on a fresh seed', async () => {
    expect(built.metadata.training.heldOutAccuracy).toBeGreaterThanOrEqual(0.6);
    const fresh = await generateDataset({ count: 150, seed: 4242, width: 64, height: 64 });
    const probs = await classify(fresh.map((s) => s.image));
    const result = evaluate(argmaxRows(probs, 3), Int32Array.from(fresh, (s) => s.labelIndex), 3);
    expect(result.accuracy).toBeGreaterThanOrEqual(0.6);
    // Every class is recognised, not just one dominant guess.
    result.confusion.forEach((row, k) => expect((row[k] ?? 0) / 50).toBeGreaterThan(0.5));
  });

  it('classifies frames decoded from the H.264 camera clip', async () => {
    const video = await makePetParkVideo({ outPath: path.join(dir, 'camera.mp4'), ffmpegPath: ffmpegInstaller.path, seed: 11, scenes: 9 });
    const score = await scoreVideo({
      videoPath: video.outPath,
      ffmpegPath: ffmpegInstaller.path,
      fps: video.fps,
      schedule: video.schedule,
      modelPath: built.modelPath,
      metadata: built.metadata,
    });
    expect(score.frames.confusion.flat().reduce((a, b) => a + b, 0)).toBe(video.frameCount);
    expect(score.frames.accuracy).toBeGreaterThanOrEqual(0.6);
    expect(score.scenesCorrect).toBeGreaterThan(score.sceneCount / 2);
  });

  it('reuses a matching build and rebuilds when parameters or files change', async () => {
    const again = await buildDemoModel({ outDir: modelDir });
    expect(again.cached).toBe(true);
    expect(again.metadata).toEqual(built.metadata);

    // Small builds keep this quick; only the cache behaviour is under test here.
    const smallDir = path.join(dir, 'small');
    const small = { outDir: smallDir, trainCount: 60, testCount: 30 };
    expect((await buildDemoModel(small)).cached).toBe(false);
    expect((await buildDemoModel(small)).cached).toBe(true);
    const other = await buildDemoModel({ ...small, seed: 2 });
    expect(other.cached).toBe(false);
    expect(other.metadata.training.seed).toBe(2);

    // A damaged model file must not be trusted.
    writeFileSync(other.modelPath, Buffer.from('not a model'));
    const repaired = await buildDemoModel({ ...small, seed: 2 });
    expect(repaired.cached).toBe(false);
    expect(statSync(repaired.modelPath).size).toBeGreaterThan(1000);
  });

  it('rejects invalid options', async () => {
    await expect(buildDemoModel({ outDir: dir, trainCount: 5 })).rejects.toThrow(/trainCount/);
    await expect(buildDemoModel({ outDir: dir, width: 60 })).rejects.toThrow(/multiple of 16/);
  });

  it('has a CLI that reports accuracy and confusion', async () => {
    const lines: string[] = [];
    await runBuildDemoModelCli(['node', 'build-demo-model-cli.js', '--out', modelDir, '--video', '--scenes', '3'], (l) => lines.push(l));
    const text = lines.join('\n');
    expect(text).toMatch(/^reused /);
    expect(text).toMatch(/held-out accuracy \d+\.\d% on 600 images/);
    expect(text).toMatch(/empty\s+\d+\s+\d+\s+\d+/);
    expect(text).toMatch(/video frames accuracy \d+\.\d%, scenes right \d\/3/);
  });
});
