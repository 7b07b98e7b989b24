import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './harness.js';

const SCRIPT = fileURLToPath(new URL('./rtsp-server.py', import.meta.url));
/** Debian's python: the python3 first on PATH may be a separate install that cannot see python3-gi. */
const PYTHON = process.env.PERCH_TEST_PYTHON ?? '/usr/bin/python3';
const INSTALL_HINT =
  'the RTSP tests need GStreamer\'s RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base ' +
  'gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad (.ci/run installs them)';

export interface RtspServerOptions {
  mount?: string;
  /** basic authentication; the password goes to the server in a file */
  user?: string;
  password?: string;
  /** e.g. '320x240' */
  size?: string;
  /** alternate between `size` and this every `flipMs` */
  flipSize?: string;
  flipMs?: number;
  fps?: number;
}

/**
 * GStreamer's RTSP server (rtsp-server.py) in a child process on a free
 * 127.0.0.1 port. It can be killed and started again on the same port, and
 * frozen (SIGSTOP), for the camera's reconnect and stall tests.
 */
export class RtspTestServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private killing = false;
  /** resolution changes the server has made so far */
  sizeChanges = 0;
  port = 0;
  /** how the server ended when no test asked it to, with its last words; null while it runs or after kill() */
  unexpectedExit: string | null = null;

  private constructor(
    private readonly opts: RtspServerOptions,
    private readonly dir: { path: string; remove(): Promise<void> },
  ) {}

  static async start(opts: RtspServerOptions = {}): Promise<RtspTestServer> {
    const dir = await tempDir('perch-rtsp-');
    const server = new RtspTestServer(opts, dir);
    try {
      await server.launch(0);
    } catch (err) {
      await dir.remove();
      throw err;
    }
    return server;
  }

  /** rtsp://127.0.0.1:port/mount, optionally with a path other than the served one */
  url(mount = this.opts.mount ?? '/cam'): string {
    return `rtsp://127.0.0.1:${this.port}${mount}`;
  }

  /** SIGKILL: the server vanishes without a word, as a camera losing power does. */
  async kill(): Promise<void> {
    this.killing = true;
    this.child?.kill('SIGKILL');
    await this.exited;
    this.child = null;
    this.killing = false;
  }

  /** Starts the server again on the port it had. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch(this.port);
  }

  /** The process freezes: connections stay open and nothing is sent, a hung camera. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
    await this.dir.remove();
  }

  private async launch(port: number): Promise<void> {
    const args = [SCRIPT, '--port', String(port), '--mount', this.opts.mount ?? '/cam', '--size', this.opts.size ?? '320x240', '--fps', String(this.opts.fps ?? 10)];
    if (this.opts.user !== undefined) {
      const passwordFile = join(this.dir.path, 'password');
      await writeFile(passwordFile, this.opts.password ?? '', { mode: 0o600 });
      args.push('--user', this.opts.user, '--password-file', passwordFile);
    }
    if (this.opts.flipSize !== undefined) args.push('--flip-size', this.opts.flipSize, '--flip-ms', String(this.opts.flipMs ?? 2000));
    // stdin stays open: the server exits when it closes, so a crashed test run leaves none behind.
    const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    this.unexpectedExit = null;
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        if (!this.killing) this.unexpectedExit = `exited (${signal ?? `code ${String(code)}`}): ${stderr.trim()}`;
        resolve();
      }),
    );
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (t: string) => (stderr = (stderr + t).slice(-4000)));
    this.port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (t: string) => {
        out += t;
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const line of lines) {
          const ready = /^ready (\d+)$/.exec(line);
          if (ready) resolve(Number(ready[1]));
          else if (line.startsWith('size ')) this.sizeChanges++;
        }
      });
      child.once('error', (err) => reject(new Error(`cannot run ${PYTHON}: ${err.message}; ${INSTALL_HINT}`)));
      child.once('close', (code) => reject(new Error(`RTSP test server exited (code ${String(code)}): ${stderr.trim()}${code === 3 ? `; ${INSTALL_HINT}` : ''}`)));
    });
  }
}
