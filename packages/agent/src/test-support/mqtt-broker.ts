import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes } from 'aedes';

export interface TestBroker {
  url: string;
  port: number;
  broker: Aedes;
  close(): Promise<void>;
}

/** A real aedes broker on a free loopback port. */
export async function startBroker(opts: { credentials?: Record<string, string>; port?: number } = {}): Promise<TestBroker> {
  const broker = await Aedes.createBroker({
    authenticate: (_client, username, password, done) => {
      if (!opts.credentials) return done(null, true);
      const ok = username !== undefined && password !== undefined && opts.credentials[username] === password.toString();
      if (ok) return done(null, true);
      const err = Object.assign(new Error('bad username or password'), { returnCode: 4 as const });
      return done(err, false);
    },
  });
  // No Nagle, as the control plane's embedded broker: small packets must not wait for delayed ACKs.
  const server: Server = createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    broker,
    close: async () => {
      // Closing the broker drops its clients, so the server can then close.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
