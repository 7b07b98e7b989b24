/**
 * A synthetic CCTV clip of the pet park: a sequence of static scenes (with fresh
 * sensor grain every frame) encoded to H.264 by piping raw RGB frames into ffmpeg.
 * The ground-truth schedule is returned and written next to the video, so a demo or
 * test can score what a camera pipeline detects.
 */
import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import ffmpeg from 'fluent-ffmpeg';
import { z } from 'zod';
import { PET_PARK_LABELS, type PetParkLabel } from './labels.js';
import { createRng, deriveSeed } from './prng.js';
import { applyCameraEffects, rasterizeScenes } from './render-scene.js';
import { sampleScene } from './sample-scene.js';

export interface ScheduleEntry {
  startS: number;
  endS: number;
  label: PetParkLabel;
}

export interface PetParkVideo {
  outPath: string;
  schedulePath: string;
  schedule: ScheduleEntry[];
  width: number;
  height: number;
  fps: number;
  frameCount: number;
}

const evenSide = z
  .number()
  .int()
  .min(16)
  .max(1920)
  .refine((v) => v % 2 === 0, 'must be even (yuv420p subsamples chroma 2x2)');

const videoOptionsSchema = z
  .object({
    outPath: z.string().min(1),
    /** A gateway box passes its system ffmpeg; it needs libx264. */
    ffmpegPath: z.string().min(1).default(ffmpegInstaller.path),
    seed: z.number().int().min(0).max(0xffffffff).default(1),
    width: evenSide.default(320),
    height: evenSide.default(240),
    fps: z.number().int().min(1).max(60).default(10),
    secondsPerScene: z.number().positive().max(600).default(2),
    scenes: z.number().int().min(1).max(1000).default(6),
  })
  .refine((o) => Math.abs(o.fps * o.secondsPerScene - Math.round(o.fps * o.secondsPerScene)) < 1e-9 && o.fps * o.secondsPerScene >= 1, {
    message: 'fps * secondsPerScene must be a whole number of frames (at least 1)',
  });

export type PetParkVideoOptions = z.input<typeof videoOptionsSchema>;

/** `video.mp4` -> `video.schedule.json`. */
export function schedulePathFor(videoPath: string): string {
  const ext = path.extname(videoPath);
  return `${ext ? videoPath.slice(0, -ext.length) : videoPath}.schedule.json`;
}

/** Every block of three consecutive scenes holds each class once, in a seeded order. */
export function sceneLabels(count: number, seed: number): PetParkLabel[] {
  const rng = createRng(deriveSeed(seed, 0x5ced));
  const labels: PetParkLabel[] = [];
  while (labels.length < count) {
    const block = [...PET_PARK_LABELS];
    for (let i = block.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      const a = block[i];
      const b = block[j];
      if (a === undefined || b === undefined) throw new Error('sceneLabels: shuffle out of range');
      block[i] = b;
      block[j] = a;
    }
    labels.push(...block);
  }
  return labels.slice(0, count);
}

export async function makePetParkVideo(options: PetParkVideoOptions): Promise<PetParkVideo> {
  const parsed = videoOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`makePetParkVideo: invalid options: ${z.prettifyError(parsed.error)}`);
  const o = parsed.data;
  const framesPerScene = Math.round(o.fps * o.secondsPerScene);
  const labels = sceneLabels(o.scenes, o.seed);
  const specs = labels.map((label, i) => sampleScene(label, createRng(deriveSeed(deriveSeed(o.seed, 0x71de0), i))));
  const size = { width: o.width, height: o.height };
  const clean = await rasterizeScenes(specs, size);

  // Frames are generated lazily as ffmpeg consumes them, so memory stays at one frame.
  function* frames(): Generator<Buffer> {
    for (let s = 0; s < specs.length; s++) {
      const spec = specs[s];
      const image = clean[s];
      if (!spec || !image) throw new Error(`makePetParkVideo: scene ${s} missing`);
      for (let f = 0; f < framesPerScene; f++) {
        const frame = applyCameraEffects(image, spec, deriveSeed(spec.noiseSeed, f));
        yield Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.length);
      }
    }
  }

  // fluent-ffmpeg crashes (uncaught, promise never settles) when the binary cannot be spawned, so check first.
  await access(o.ffmpegPath, constants.X_OK).catch(() => {
    throw new Error(`makePetParkVideo: ffmpeg binary ${o.ffmpegPath} is missing or not executable`);
  });
  await mkdir(path.dirname(path.resolve(o.outPath)), { recursive: true });
  await new Promise<void>((resolve, reject) => {
    ffmpeg()
      .setFfmpegPath(o.ffmpegPath)
      .input(Readable.from(frames(), { objectMode: false }))
      .inputFormat('rawvideo')
      .inputOptions(['-pix_fmt', 'rgb24', '-video_size', `${o.width}x${o.height}`, '-framerate', String(o.fps)])
      .videoCodec('libx264')
      .outputOptions(['-pix_fmt', 'yuv420p', '-preset', 'veryfast', '-crf', '20', '-movflags', '+faststart', '-an'])
      .on('error', (err: Error, _stdout: string | null, stderr: string | null) => {
        reject(new Error(`makePetParkVideo: ffmpeg (${o.ffmpegPath}) failed: ${err.message}${stderr ? `\n${stderr.slice(-2000)}` : ''}`));
      })
      .on('end', () => resolve())
      .save(o.outPath);
  });

  const sceneSeconds = framesPerScene / o.fps;
  const schedule = labels.map((label, i) => ({ startS: i * sceneSeconds, endS: (i + 1) * sceneSeconds, label }));
  const video: PetParkVideo = {
    outPath: o.outPath,
    schedulePath: schedulePathFor(o.outPath),
    schedule,
    width: o.width,
    height: o.height,
    fps: o.fps,
    frameCount: framesPerScene * specs.length,
  };
  await writeFile(
    video.schedulePath,
    `${JSON.stringify({ video: path.basename(o.outPath), width: o.width, height: o.height, fps: o.fps, frameCount: video.frameCount, labels: PET_PARK_LABELS, schedule }, null, 2)}\n`,
  );
  return video;
}
