import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between a device and a real broker that can misbehave like a
 * bad link: hold back what the broker sends (its PUBACKs) while the device's
 * packets still go through, cut every connection, or refuse new ones.
 */
export class LinkProxy {
  private readonly pairs = new Set<{ device: Socket; broker: Socket; held: Buffer[] }>();
  private holding = false;
  private refusing = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(brokerPort: number): Promise<LinkProxy> {
    let proxy: LinkProxy | undefined;
    const server = createServer((device) => proxy?.accept(device, brokerPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new LinkProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Broker-to-device bytes are kept back from now on. */
  hold(): void {
    this.holding = true;
  }

  /** Delivers what was kept back and stops holding. */
  release(): void {
    this.holding = false;
    for (const p of this.pairs) for (const chunk of p.held.splice(0)) p.device.write(chunk);
  }

  /** Drops every connection at once, like a link going away; held bytes are lost with it. */
  cut(): void {
    for (const p of this.pairs) {
      p.device.destroy();
      p.broker.destroy();
    }
    this.pairs.clear();
  }

  /** The broker is unreachable: open connections are cut and new ones closed at once. */
  down(): void {
    this.refusing = true;
    this.cut();
  }

  up(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    this.down();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(device: Socket, brokerPort: number): void {
    if (this.refusing) {
      device.destroy();
      return;
    }
    const broker = connect(brokerPort, '127.0.0.1');
    const pair = { device, broker, held: [] as Buffer[] };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      device.destroy();
      broker.destroy();
    };
    device.on('data', (chunk: Buffer) => broker.write(chunk));
    broker.on('data', (chunk: Buffer) => {
      if (this.holding) pair.held.push(chunk);
      else device.write(chunk);
    });
    for (const s of [device, broker]) {
      s.on('error', end);
      s.on('close', end);
    }
  }
}
