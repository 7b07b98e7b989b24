import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { allowedCpus, formatCpuList, parseCpuList } from './cpu-list.js';
import { DecoderCpuError, DecoderCpus, type DecoderCpusOptions } from './decoder-cpus.js';
import { FfmpegCamera } from './ffmpeg-camera.js';

const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const hostCpus = allowedCpus();

/** The CPUs a running process may use, as /proc says. */
const cpusOf = (pid: number): number[] | null => allowedCpus(`/proc/${pid}/status`);

describe('CPU lists', () => {
  it('reads and writes the form /proc and taskset use', () => {
    expect(parseCpuList('0-3,6')).toEqual([0, 1, 2, 3, 6]);
    expect(parseCpuList(' 5, 1-2 ,2\n')).toEqual([1, 2, 5]);
    expect(formatCpuList([0, 2, 3])).toBe('0,2,3');
    for (const bad of ['', 'a', '3-1', '1,,2', '-1']) expect(() => parseCpuList(bad), bad).toThrow(/not a CPU list/);
  });

  it("reads the process's allowed CPUs from its status file, and null when there is none or it says nothing", async () => {
    const dir = await tempDir();
    try {
      const status = join(dir.path, 'status');
      await writeFile(status, 'Name:\tnode\nCpus_allowed:\tf\nCpus_allowed_list:\t0-1,4\nMems_allowed:\t1\n');
      expect(allowedCpus(status)).toEqual([0, 1, 4]);
      await writeFile(status, 'Name:\tnode\n');
      expect(allowedCpus(status)).toBeNull();
      expect(allowedCpus(join(dir.path, 'missing'))).toBeNull();
    } finally {
      await dir.remove();
    }
  });
});

describe('which CPUs the decoders get', () => {
  const place = (opts: Omit<DecoderCpusOptions, 'inferenceThreads'> & { inferenceThreads?: number }, log = new CapturedLog('info')) =>
    new DecoderCpus({ inferenceThreads: 1, ...opts }, () => [], log.logger);

  it("'auto' leaves the last intraOpThreads CPUs to inference where at least two are left to the decoders", () => {
    const log = new CapturedLog('info');
    expect(place({ setting: 'auto', allowed: [0, 1, 2, 3] }, log).placement).toEqual({ taskset: 'taskset', cpus: [0, 1, 2] });
    expect(log.find((l) => l.msg === 'decoders kept off the CPUs left to inference')).toMatchObject({ decoderCpus: '0,1,2', inferenceCpus: '3' });
    expect(place({ setting: 'auto', allowed: [2, 5, 6, 7], inferenceThreads: 2 }).placement?.cpus).toEqual([2, 5]);
    expect(place({ setting: 'auto', allowed: [0, 1], minDecoderCpus: 1 }).placement?.cpus).toEqual([0]);
    // Too few to spare (four decoders on one core of two queue behind each other), or nothing known: decoders go anywhere.
    const few = new CapturedLog('info');
    expect(place({ setting: 'auto', allowed: [0, 1] }, few).placement).toBeNull();
    expect(few.find((l) => String(l.msg).startsWith('decoders share the CPUs with inference: too few CPUs'))).toMatchObject({ cpus: '0,1', inferenceThreads: 1 });
    expect(place({ setting: 'auto', allowed: [2, 5, 6], inferenceThreads: 2 }).placement).toBeNull();
    expect(place({ setting: 'auto', allowed: [0] }).placement).toBeNull();
    expect(place({ setting: 'auto', allowed: null }).placement).toBeNull();
    expect(place({ setting: 'all', allowed: [0, 1, 2, 3] }).placement).toBeNull();
  });

  it("'auto' without taskset says so and places nothing; an explicit list without it, or outside the agent's CPUs, is a startup error", () => {
    const log = new CapturedLog('info');
    expect(place({ setting: 'auto', allowed: [0, 1, 2], tasksetPath: '/nonexistent/taskset' }, log).placement).toBeNull();
    expect(log.messages()).toContain('decoders share the CPUs with inference: taskset (util-linux) is not there to keep them apart');
    expect(place({ setting: [3, 1], allowed: [0, 1, 2, 3] }).placement?.cpus).toEqual([1, 3]);
    expect(() => place({ setting: [1, 7], allowed: [0, 1, 2, 3] })).toThrow(DecoderCpuError);
    expect(() => place({ setting: [1, 7], allowed: [0, 1, 2, 3] })).toThrow(/CPU 7 is not one the agent may use \(0,1,2,3\)/);
    expect(() => place({ setting: [1], allowed: [0, 1], tasksetPath: '/nonexistent/taskset' })).toThrow(/needs taskset/);
    expect(() => place({ setting: [0], allowed: null })).toThrow(/use 'auto' or 'all'/);
  });
});

describe.skipIf(hostCpus === null)('decoders on their CPUs (real ffmpeg, taskset)', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir.remove());

  function camera(decoders: DecoderCpus, id: string): FfmpegCamera {
    return new FfmpegCamera(
      { id, fps: 10, stallTimeoutMs: 20_000, source: { kind: 'synthetic', pattern: 'testsrc2' } },
      { ffmpegPath, width: 64, height: 64, placement: () => decoders.placement },
      new CapturedLog('warn').logger,
    );
  }

  /** One camera, and a DecoderCpus with these options that watches its ffmpeg. */
  function watchedCamera(options: DecoderCpusOptions, id: string): { decoders: DecoderCpus; cam: FfmpegCamera } {
    let cam: FfmpegCamera | null = null;
    const decoders = new DecoderCpus(options, () => (cam?.pid === undefined ? [] : [cam.pid]), new CapturedLog('warn').logger);
    cam = camera(decoders, id);
    return { decoders, cam };
  }

  async function running(cam: FfmpegCamera): Promise<number> {
    let frames = 0;
    cam.on('frame', () => frames++);
    cam.start();
    await waitFor(`frames from ${cam.id}`, () => frames >= 2);
    const pid = cam.pid;
    if (pid === undefined) throw new Error('no ffmpeg running');
    return pid;
  }

  it('starts ffmpeg on the CPUs given, and measures what the decoders use without moving them while they fit', async () => {
    const only = [(hostCpus ?? [0])[0] ?? 0];
    // A share that is never reached: the decoders stay where they are.
    const { decoders, cam } = watchedCamera({ setting: only, inferenceThreads: 1, sampleMs: 300, saturatedShare: 1.01, saturatedSamples: 1 }, 'pinned');
    try {
      const pid = await running(cam);
      expect(cpusOf(pid)).toEqual(only);
      decoders.start();
      await waitFor('a measurement of the decoder', () => decoders.coresUsed > 0);
      expect(decoders.isConfined).toBe(true);
      expect(cpusOf(pid)).toEqual(only);
    } finally {
      decoders.stop();
      await cam.stop();
    }
  });

  it("'all' places nothing, and the decoders' CPU use is measured all the same", async () => {
    const { decoders, cam } = watchedCamera({ setting: 'all', inferenceThreads: 1, sampleMs: 200 }, 'anywhere');
    try {
      const pid = await running(cam);
      expect(cpusOf(pid)).toEqual(hostCpus);
      decoders.start();
      await waitFor('a measurement of the decoder', () => decoders.coresUsed > 0);
      expect(decoders.isConfined).toBe(false);
    } finally {
      decoders.stop();
      await cam.stop();
    }
  });

  it.skipIf((hostCpus?.length ?? 0) < 2)("'auto' lets saturated decoders use every CPU, moving the running ones, and starts the next ones anywhere", async () => {
    const all = hostCpus ?? [];
    const cams: FfmpegCamera[] = [];
    const log = new CapturedLog('info');
    // One CPU left to the decoders is enough here; any use counts as saturation, so the first sample widens.
    const decoders = new DecoderCpus({ setting: 'auto', inferenceThreads: 1, minDecoderCpus: 1, sampleMs: 200, saturatedShare: 0, saturatedSamples: 1 }, () => cams.flatMap((c) => c.pid ?? []), log.logger);
    try {
      cams.push(camera(decoders, 'first'));
      const first = await running(cams[0] as FfmpegCamera);
      expect(cpusOf(first)).toEqual(all.slice(0, -1));
      decoders.start();
      await waitFor('the running decoder moved to every CPU', () => cpusOf(first)?.length === all.length);
      expect(decoders.isConfined).toBe(false);
      expect(decoders.placement).toBeNull();
      expect(log.messages()).toContain('decoders need more than the CPUs left to them: letting them use every CPU (inference will be slower)');
      cams.push(camera(decoders, 'second'));
      const second = await running(cams[1] as FfmpegCamera);
      expect(cpusOf(second)).toEqual(all);
      // Widened, the decoders are still measured: their use shows, and with none left it falls to nothing.
      await waitFor('a measurement of the widened decoders', () => decoders.coresUsed > 0);
      await Promise.all(cams.map((c) => c.stop()));
      await waitFor('no decoder use once they are stopped', () => decoders.coresUsed === 0);
    } finally {
      decoders.stop();
      await Promise.all(cams.map((c) => c.stop()));
    }
  });
});
