import { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import type { Logger } from '../log/logger.js';
import type { HttpConfig } from './http-config.js';
import { createLocalApp, type LocalAppSources } from './local-app.js';

/** The local endpoints on their own port (loopback by default): for the installer, a service manager and Prometheus. */
export class LocalHttpServer {
  private server: Server | null = null;

  constructor(
    private readonly config: Pick<HttpConfig, 'host' | 'port'>,
    private readonly sources: LocalAppSources,
    private readonly log: Logger,
  ) {}

  /** Where it listens, once started (port 0 in the config picks a free one). */
  get address(): { host: string; port: number } | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  /** Throws when the port cannot be bound (in use, not allowed). */
  async start(): Promise<void> {
    if (this.server) return;
    const app = createLocalApp(this.sources);
    const server = createAdaptorServer({ fetch: app.fetch });
    if (!(server instanceof Server)) throw new Error('expected an HTTP/1 server');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'local HTTP server error'));
    this.server = server;
    this.log.info({ url: `http://${this.config.host}:${this.address?.port ?? this.config.port}` }, 'local endpoints listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    // Keep-alive connections (a Prometheus scraper) would hold close() open.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }
}
