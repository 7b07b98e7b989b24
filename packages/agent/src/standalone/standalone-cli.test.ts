import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, waitFor } from '../test-support/harness.js';
import { parseMetrics, sampleValue } from '../test-support/prometheus-text.js';
import { buildTinyModel } from '../test-support/tiny-model.js';
import { makeTestVideo } from '../test-support/video-file.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const ffmpegPath = process.env.PERCH_FFMPEG_PATH ?? ffmpegInstaller.path;
const LIVE_LINE = /^camera: (red|green|blue) (0|1)\.\d\d \| \d+\.\d fps \| frame age p50 \d+ ms p95 \d+ ms/;

/** The compiled CLI as a child process, its stdout split into lines. */
class Cli {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: string[], cwd: string) {
    this.child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let buf = '';
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    this.child.stderr?.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** A hang guard for afterEach: nothing outlives its test. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  get output(): string {
    return `stdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`;
  }
}

/**
 * `perch-agent run`, spawned from the compiled CLI as an installer would run
 * it: a real model file in onnxruntime, a real video through ffmpeg.
 */
describe('perch-agent run (standalone mode)', () => {
  let dir: { path: string; remove(): Promise<void> };
  const running: Cli[] = [];
  const model = buildTinyModel({ width: 16, height: 12, gain: 8 });
  const start = (args: string[]) => {
    const cli = new Cli(['run', ...args, '--ffmpeg', ffmpegPath], dir.path);
    running.push(cli);
    return cli;
  };

  beforeAll(async () => {
    dir = await tempDir();
    await writeFile(join(dir.path, 'tiny.onnx'), model.bytes);
    await writeFile(join(dir.path, 'tiny.json'), JSON.stringify(model.metadata));
    await writeFile(join(dir.path, 'broken.onnx'), 'not an onnx model');
    await makeTestVideo(ffmpegPath, join(dir.path, 'clip.mp4'), { seconds: 2, rate: 10 });
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.kill()));
  });

  afterAll(() => dir?.remove());

  it('runs a model on a video file with metadata from flags: live lines, local endpoints, Ctrl-C exits 0', async () => {
    const cli = start(['--model', 'tiny.onnx', '--camera', 'clip.mp4', '--labels', 'red,green,blue', '--fps', '10', '--http', '0']);
    const banner = await waitFor('the first line', () => cli.lines[0], 45_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${cli.output}`);
    });
    expect(banner).toMatch(/^running tiny \(sha256 [0-9a-f]{12}\) on clip\.mp4: 16x12 NCHW RGB, 3 labels; http:\/\/127\.0\.0\.1:\d+\/metrics; Ctrl-C stops$/);
    const base = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(banner)?.[1];

    const live = await waitFor('three live prediction lines', () => {
      const l = cli.lines.filter((x) => LIVE_LINE.test(x));
      return l.length >= 3 ? l : undefined;
    }, 45_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${cli.output}`);
    });
    expect(live.length).toBeGreaterThanOrEqual(3);

    const health = await waitFor('/healthz 200', async () => {
      const r = await fetch(`${base}/healthz`);
      return r.status === 200 ? ((await r.json()) as { status: string; model: { name: string; version: string } }) : undefined;
    });
    expect(health).toMatchObject({ status: 'ok', model: { name: 'tiny', version: 'local' } });
    const m = parseMetrics(await (await fetch(`${base}/metrics`)).text());
    expect(sampleValue(m, 'perch_agent_frames_inferred_total', { camera: 'camera' })).toBeGreaterThan(0);

    cli.signal('SIGINT');
    expect(await cli.exited).toBe(0);
  });

  it('takes the metadata from a JSON file and reads a synthetic camera', async () => {
    const cli = start(['--model', 'tiny.onnx', '--metadata', 'tiny.json', '--camera', 'synthetic', '--fps', '10']);
    await waitFor('two live prediction lines', () => cli.lines.filter((x) => LIVE_LINE.test(x)).length >= 2 || undefined, 45_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${cli.output}`);
    });
    cli.signal('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('stops when the parent that started it over IPC is killed outright, leaving no orphan', async () => {
    // A parent process that starts the agent as the demo and the tests do, then is SIGKILLed: no signal reaches the agent.
    const parentScript = `
      const { spawn } = require('node:child_process');
      const agent = spawn(process.execPath, ${JSON.stringify([CLI, 'run', '--model', 'tiny.onnx', '--camera', 'clip.mp4', '--labels', 'red,green,blue', '--fps', '10', '--http', '0', '--ffmpeg', ffmpegPath])}, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      console.log('agent pid ' + agent.pid);
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ['-e', parentScript], { cwd: dir.path, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    parent.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    parent.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const parentExited = new Promise((resolve) => parent.once('exit', resolve));
    let agentPid = 0;
    try {
      agentPid = Number(await waitFor('the agent pid', () => /agent pid (\d+)/.exec(out)?.[1], 20_000));
      await waitFor('a live prediction line', () => out.split('\n').some((l) => LIVE_LINE.test(l)) || undefined, 45_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${out}`);
      });
      parent.kill('SIGKILL');
      await parentExited;
      // Gone, or a zombie waiting for a reaper: either way it no longer runs.
      const alive = () => {
        try {
          return !/^State:\s+Z/m.test(readFileSync(`/proc/${agentPid}/status`, 'utf8'));
        } catch {
          return false;
        }
      };
      await waitFor('the orphaned agent to stop', () => !alive() || undefined, 20_000);
      expect(alive()).toBe(false);
    } finally {
      if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
      if (agentPid > 0) {
        try {
          process.kill(agentPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });

  it('bad flags: exit code 2 and every problem listed, each under its flag', async () => {
    const cli = start(['--model', 'tiny.onnx', '--camera', 'nowhere.mp4', '--fps', 'fast', '--size', '16by12', '--mean', '1,2', '--layout', 'CHW', '--bogus']);
    expect(await cli.exited).toBe(2);
    const problems = cli.stderr.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim().split(':')[0]);
    expect(problems.sort()).toEqual(['--bogus', '--camera', '--fps', '--labels', '--layout', '--mean', '--size']);
    expect(cli.stderr).toMatch(/^perch-agent run: 7 problems:/);
    expect(cli.lines).toEqual([]);
  });

  it('metadata that does not fit the model, or a model that is no model: exit code 2 naming the problem', async () => {
    const misfit = start(['--model', 'tiny.onnx', '--camera', 'synthetic', '--labels', 'red,green,blue', '--size', '32x32']);
    expect(await misfit.exited).toBe(2);
    expect(misfit.stderr).toMatch(/model does not match its metadata \(metadata\.input\): input "input" has shape \[1, 3, 12, 16\], metadata says NCHW \[N, 3, 32, 32\]/);

    const broken = start(['--model', 'broken.onnx', '--camera', 'synthetic', '--labels', 'a,b']);
    expect(await broken.exited).toBe(2);
    expect(broken.stderr).toMatch(/--model: cannot load .*broken\.onnx in onnxruntime/);
  });
});
