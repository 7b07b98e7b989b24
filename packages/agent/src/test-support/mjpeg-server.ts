import { execFile } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';

/** One JPEG of ffmpeg's SMPTE bars, so a frame's layout can be checked after scaling. */
export async function smpteJpeg(ffmpegPath: string, size: string): Promise<Buffer> {
  const { stdout } = await promisify(execFile)(
    ffmpegPath,
    ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `smptebars=size=${size}`, '-frames:v', '1', '-q:v', '3', '-f', 'mjpeg', 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout;
}

export interface MjpegServerOptions {
  /** JPEGs served in turn, one every `intervalMs` */
  frames: Buffer[];
  intervalMs?: number;
  /** basic authentication; anything else gets 401 */
  auth?: { user: string; password: string };
  path?: string;
}

/**
 * An HTTP camera serving multipart/x-mixed-replace JPEG (as IP cameras'
 * /mjpeg endpoints do) on a free 127.0.0.1 port; other paths get 404.
 */
export class MjpegTestServer {
  /** frames written so far, over all clients */
  served = 0;
  /** while paused, connections stay open and no frame is sent: a hung camera */
  paused = false;
  private readonly responses = new Set<ServerResponse>();

  private constructor(
    private readonly server: Server,
    private readonly opts: MjpegServerOptions,
  ) {}

  static async start(opts: MjpegServerOptions): Promise<MjpegTestServer> {
    let self: MjpegTestServer | null = null;
    const server = createServer((req, res) => self?.handle(req.url ?? '/', req.headers.authorization, res));
    self = new MjpegTestServer(server, opts);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return self;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = this.opts.path ?? '/mjpeg'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async stop(): Promise<void> {
    for (const res of this.responses) res.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(url: string, authorization: string | undefined, res: ServerResponse): void {
    if (url !== (this.opts.path ?? '/mjpeg')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    const auth = this.opts.auth;
    if (auth && authorization !== `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="camera"', 'Content-Type': 'text/plain' }).end('unauthorized');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'multipart/x-mixed-replace; boundary=frame', 'Cache-Control': 'no-cache' });
    this.responses.add(res);
    let i = 0;
    const timer = setInterval(() => {
      if (this.paused) return;
      const jpeg = this.opts.frames[i++ % this.opts.frames.length];
      if (!jpeg) return;
      res.write(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
      res.write(jpeg);
      res.write('\r\n');
      this.served++;
    }, this.opts.intervalMs ?? 100);
    res.on('close', () => {
      clearInterval(timer);
      this.responses.delete(res);
    });
  }
}
