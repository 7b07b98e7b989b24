import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ModelMetadata } from '@perch/shared';
import { z } from 'zod';
import { defaultFfmpegPath, type CameraConfig, type LogLevel } from '../config/agent-config.js';
import { cameraFromSource } from './camera-source.js';
import { metadataFromFile, metadataFromFlags, type MetadataFlags } from './model-description.js';
import { readModelIo, type ModelIo } from './model-io.js';

/** `perch-agent run` options as commander hands them over: strings, any of them missing. */
export interface RawRunOptions extends MetadataFlags {
  model?: string;
  camera?: string;
  metadata?: string;
  fps?: string;
  threads?: string;
  http?: string;
  ffmpeg?: string;
  logLevel?: string;
}

export interface RunOptions {
  modelPath: string;
  metadata: ModelMetadata;
  camera: CameraConfig;
  ffmpegPath: string;
  intraOpThreads: number;
  /** serve /healthz, /metrics and /snapshot/camera here */
  http: { host: string; port: number } | null;
  logLevel: LogLevel;
}

const METADATA_FLAG_KEYS = ['labels', 'size', 'layout', 'channels', 'resize', 'mean', 'std', 'scale', 'inputName', 'outputName', 'outputKind'] as const;

const numberText = (what: string) => z.string().regex(/^\d+(\.\d+)?$/, `expected ${what}`).transform(Number);
const scalarsSchema = z.object({
  fps: numberText('frames per second, e.g. 5').pipe(z.number().positive().max(60)).default(5),
  threads: numberText('a whole number of threads').pipe(z.number().int().min(1).max(64)).default(1),
  http: z
    .string()
    .regex(/^(?:(.+):)?(\d{1,5})$/, 'expected PORT or HOST:PORT, e.g. 9180 or 127.0.0.1:9180')
    .transform((s) => {
      const m = /^(?:(.+):)?(\d{1,5})$/.exec(s);
      return { host: m?.[1] ?? '127.0.0.1', port: Number(m?.[2]) };
    })
    .pipe(z.object({ host: z.string(), port: z.number().int().min(0).max(65535) }))
    .optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
});
const FLAG_OF_KEY: Record<string, string> = { fps: '--fps', threads: '--threads', http: '--http', logLevel: '--log-level' };

/**
 * Checks everything `perch-agent run` was given and collects every problem,
 * each under the flag to fix, instead of stopping at the first: the model
 * is opened (to read its inputs and outputs), the metadata built and
 * checked against it, the camera source mapped to a camera config.
 */
export async function parseRunOptions(raw: RawRunOptions, extraArgs: readonly string[] = []): Promise<{ ok: true; options: RunOptions } | { ok: false; problems: string[] }> {
  const problems: string[] = [];
  for (const arg of extraArgs) problems.push(arg.startsWith('-') ? `${arg}: unknown option` : `${JSON.stringify(arg)}: unexpected argument`);

  const scalars = scalarsSchema.safeParse(raw);
  if (!scalars.success) for (const i of scalars.error.issues) problems.push(`${FLAG_OF_KEY[String(i.path[0])] ?? String(i.path[0])}: ${i.message}`);
  const fps = scalars.success ? scalars.data.fps : 5;

  let camera: CameraConfig | undefined;
  if (raw.camera === undefined) problems.push('--camera: required (a video file, rtsp://…, http(s)://… MJPEG, /dev/videoN or synthetic)');
  else {
    const c = cameraFromSource(raw.camera, fps);
    if (c.ok) camera = c.camera;
    else problems.push(...c.problems);
  }

  let ffmpegPath = '';
  try {
    ffmpegPath = raw.ffmpeg !== undefined ? resolve(raw.ffmpeg) : defaultFfmpegPath();
    if (!existsSync(ffmpegPath)) problems.push(`--ffmpeg: no such file ${ffmpegPath}`);
  } catch (err) {
    problems.push(`--ffmpeg: ${(err as Error).message}`);
  }

  let metadata: ModelMetadata | undefined;
  const flagsGiven = METADATA_FLAG_KEYS.filter((k) => raw[k] !== undefined);
  if (raw.metadata !== undefined && flagsGiven.length > 0) {
    problems.push(`--metadata: give a metadata file or metadata flags, not both (also given: ${flagsGiven.map(flagName).join(', ')})`);
  }
  const modelPath = raw.model !== undefined ? resolve(raw.model) : undefined;
  if (modelPath === undefined) problems.push('--model: required (an ONNX image classifier)');
  else if (!existsSync(modelPath)) problems.push(`--model: no such file ${modelPath}`);
  else {
    let io: ModelIo | undefined;
    try {
      io = await readModelIo(modelPath);
    } catch (err) {
      problems.push(`--model: cannot load ${modelPath} in onnxruntime: ${(err as Error).message.split('\n')[0]}`);
    }
    if (io) {
      const described = raw.metadata !== undefined ? await metadataFromFile(resolve(raw.metadata), io) : metadataFromFlags(raw, io);
      if (described.ok) metadata = described.metadata;
      else problems.push(...described.problems);
    }
  }

  if (problems.length > 0 || !scalars.success || !camera || !metadata || !modelPath) return { ok: false, problems };
  return {
    ok: true,
    options: { modelPath, metadata, camera, ffmpegPath, intraOpThreads: scalars.data.threads, http: scalars.data.http ?? null, logLevel: scalars.data.logLevel },
  };
}

function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
