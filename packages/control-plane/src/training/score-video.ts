/**
 * Scores a classifier on a pet-park camera clip: decode every frame at the model's
 * input size, classify, and compare with the ground-truth schedule. This checks that
 * the synthetic training domain carries over to H.264-compressed camera frames.
 */
import { readFile } from 'node:fs/promises';
import { createSession, runBatched } from './batched-inference.js';
import { decodeVideoFrames } from './decode-video-frames.js';
import { argmaxRows, evaluate, type Evaluation } from './evaluation.js';
import type { TrainedModelFile } from './model-metadata.js';
import type { ScheduleEntry } from './pet-park/camera-video.js';

export interface VideoScore {
  /** Per-frame accuracy and confusion. */
  frames: Evaluation;
  /** Scenes whose majority-vote prediction over their frames is right. */
  scenesCorrect: number;
  sceneCount: number;
}

export async function scoreVideo(options: {
  videoPath: string;
  ffmpegPath: string;
  fps: number;
  schedule: readonly ScheduleEntry[];
  modelPath: string;
  metadata: TrainedModelFile;
}): Promise<VideoScore> {
  const { metadata: m } = options;
  const frames = await decodeVideoFrames(options.videoPath, options.ffmpegPath, m.input.width, m.input.height);
  if (frames.length === 0) throw new Error(`scoreVideo: no frames decoded from ${options.videoPath}`);
  const classes = m.labels.length;
  const session = await createSession(new Uint8Array(await readFile(options.modelPath)));
  const probs = await runBatched(session, frames, {
    inputName: m.input.name,
    outputName: m.output.name,
    width: m.input.width,
    height: m.input.height,
    normalization: m.normalization,
  });
  await session.release();
  const predicted = argmaxRows(probs.data, classes);

  // Frame i shows the scene whose [startS, endS) contains its timestamp.
  const sceneOf = (i: number): number => options.schedule.findIndex((s) => i / options.fps >= s.startS - 1e-9 && i / options.fps < s.endS - 1e-9);
  const truth = Int32Array.from(frames, (_, i) => {
    const entry = options.schedule[sceneOf(i)];
    if (!entry) throw new Error(`scoreVideo: frame ${i} is outside the schedule`);
    return m.labels.indexOf(entry.label);
  });

  const votes = options.schedule.map(() => new Array<number>(classes).fill(0));
  predicted.forEach((p, i) => {
    const v = votes[sceneOf(i)];
    if (v) v[p] = (v[p] ?? 0) + 1;
  });
  const scenesCorrect = votes.filter((v, s) => {
    const entry = options.schedule[s];
    return entry !== undefined && v.indexOf(Math.max(...v)) === m.labels.indexOf(entry.label);
  }).length;

  return { frames: evaluate(predicted, truth, classes), scenesCorrect, sceneCount: options.schedule.length };
}
