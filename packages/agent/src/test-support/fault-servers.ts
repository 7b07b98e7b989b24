import { randomBytes } from 'node:crypto';
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
  /** random bytes from the first moment: not the protocol at all */
  | 'garbage'
  /** a valid HTTP multipart header, then random bytes: a camera that streams garbage */
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
    // Paced, so a client that keeps reading does not spin this test process.
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(randomBytes(16 * 1024));
    }, 20);
    socket.on('close', () => clearInterval(timer));
  }
}
