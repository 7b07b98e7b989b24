/**
 * Builds the pet-park demo classifier (and optionally a camera clip) from the command line:
 *   node dist/training/build-demo-model-cli.js --out DIR [--video] [--seed N] [--force]
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { buildDemoModel } from './demo-model.js';
import { makePetParkVideo } from './pet-park/camera-video.js';
import { scoreVideo } from './score-video.js';

export const DEMO_VIDEO_FILE = 'pet-park-camera.mp4';

const integer = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};

function formatConfusion(labels: readonly string[], confusion: readonly (readonly number[])[]): string {
  const width = Math.max(8, ...labels.map((l) => l.length + 2));
  const header = `${'true \\ predicted'.padEnd(18)}${labels.map((l) => l.padStart(width)).join('')}`;
  const rows = confusion.map((row, i) => `${(labels[i] ?? String(i)).padEnd(18)}${row.map((n) => String(n).padStart(width)).join('')}`);
  return [header, ...rows].join('\n');
}

interface CliOptions {
  out: string;
  video: boolean;
  seed: number;
  trainCount?: number;
  testCount?: number;
  scenes: number;
  ffmpeg: string;
  force: boolean;
}

/** Runs the CLI with `argv` (as in process.argv) and writes its report through `print`. */
export async function runBuildDemoModelCli(argv: readonly string[], print: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<void> {
  const program = new Command('build-demo-model')
    .description('Train the pet-park classifier on synthetic scenes and write it as ONNX + JSON')
    .requiredOption('--out <dir>', 'output directory')
    .option('--video', 'also render a pet-park camera clip and score the model on it', false)
    .option('--seed <n>', 'training seed', integer('--seed'), 1)
    .option('--train-count <n>', 'rendered training scenes', integer('--train-count'))
    .option('--test-count <n>', 'held-out test scenes', integer('--test-count'))
    .option('--scenes <n>', 'scenes in the camera clip', integer('--scenes'), 6)
    .option('--ffmpeg <path>', 'ffmpeg binary (needs libx264)', ffmpegInstaller.path)
    .option('--force', 'rebuild even if a matching model exists', false)
    .exitOverride();
  program.parse([...argv]);
  const o = program.opts<CliOptions>();

  const built = await buildDemoModel({
    outDir: o.out,
    seed: o.seed,
    force: o.force,
    ...(o.trainCount !== undefined ? { trainCount: o.trainCount } : {}),
    ...(o.testCount !== undefined ? { testCount: o.testCount } : {}),
  });
  const t = built.metadata.training;
  print(`${built.cached ? 'reused' : 'built'} ${built.modelPath}`);
  print(`held-out accuracy ${(t.heldOutAccuracy * 100).toFixed(1)}% on ${t.testCount} images (train ${(t.trainAccuracy * 100).toFixed(1)}%, build ${t.durationMs} ms)`);
  print(formatConfusion(built.metadata.labels, t.confusion));

  if (o.video) {
    const video = await makePetParkVideo({ outPath: path.join(o.out, DEMO_VIDEO_FILE), ffmpegPath: o.ffmpeg, seed: o.seed, scenes: o.scenes });
    print(`video ${video.outPath} (${video.frameCount} frames, ${video.width}x${video.height} @ ${video.fps} fps), schedule ${video.schedulePath}`);
    const score = await scoreVideo({
      videoPath: video.outPath,
      ffmpegPath: o.ffmpeg,
      fps: video.fps,
      schedule: video.schedule,
      modelPath: built.modelPath,
      metadata: built.metadata,
    });
    print(`video frames accuracy ${(score.frames.accuracy * 100).toFixed(1)}%, scenes right ${score.scenesCorrect}/${score.sceneCount}`);
    print(formatConfusion(built.metadata.labels, score.frames.confusion));
  }
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(path.resolve(entry)).href) {
  runBuildDemoModelCli(process.argv).catch((err: unknown) => {
    // Commander has already printed help or the usage error itself.
    if (err instanceof CommanderError) process.exit(err.exitCode);
    process.stderr.write(`build-demo-model: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
