import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A 127.0.0.1 port nothing listens on: connecting is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export type FaultBehaviour =
  /** accepts and never says a word: a camera that hangs */
  | 'silent'
  /** random-looking bytes from the first moment: not the protocol at all */
  | 'garbage'
  /** a valid HTTP multipart header, then random-looking bytes: a camera that streams garbage */
  | 'http-garbage';

/** A TCP server on a free 127.0.0.1 port that misbehaves in one way. */
export class FaultServer {
  connections = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(behaviour: FaultBehaviour): Promise<FaultServer> {
    let self: FaultServer | null = null;
    const server = createServer((socket) => self?.accept(socket, behaviour));
    self = new FaultServer(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return self;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket, behaviour: FaultBehaviour): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
    if (behaviour === 'silent') return;
    if (behaviour === 'http-garbage') socket.write('HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n');
    // The same bytes on every run: how long a client chews on garbage depends on what it reads (ffmpeg's RTSP
    // reader took from 0.2 s to over 20 s on fresh random bytes), and a test must not depend on the draw.
    const garbage = new GarbageStream();
    // Paced, so a client that keeps reading does not spin this test process.
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(garbage.next(16 * 1024));
    }, 20);
    socket.on('close', () => clearInterval(timer));
  }
}

/** Deterministic random-looking bytes: SHA-256 of a counter. */
class GarbageStream {
  private counter = 0;

  next(bytes: number): Buffer {
    const blocks: Buffer[] = [];
    for (let n = 0; n < bytes; n += 32) blocks.push(createHash('sha256').update(`garbage-${this.counter++}`).digest());
    return Buffer.concat(blocks).subarray(0, bytes);
  }
}
