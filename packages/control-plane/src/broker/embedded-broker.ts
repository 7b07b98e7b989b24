import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { parseDeviceTopic } from '@perch/shared';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
import { BrokerAccess, type BrokerAccessOptions, type Principal } from './broker-access.js';

export interface EmbeddedBrokerOptions extends BrokerAccessOptions {
  host: string;
  port: number;
}

const principals = new WeakMap<Client, Principal>();

function authError(message: string): Error & { returnCode: number } {
  // 4 = bad username or password (MQTT 3.1.1 CONNACK).
  return Object.assign(new Error(message), { returnCode: 4 });
}

/** The aedes broker inside the control plane process, on a TCP port. */
export class EmbeddedBroker {
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private serverClosed: Promise<void> | null = null;
  private readonly access: BrokerAccess;

  constructor(
    private readonly opts: EmbeddedBrokerOptions,
    private readonly log: Logger,
  ) {
    this.access = new BrokerAccess(opts);
  }

  get port(): number {
    const addr = this.server?.address() as AddressInfo | null;
    if (!addr) throw new Error('broker not started');
    return addr.port;
  }

  get connectedClients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  async start(): Promise<void> {
    const access = this.access;
    const log = this.log;
    const broker = await Aedes.createBroker({
      authenticate(client, username, password, done) {
        const who = access.authenticate(client.id, username, password);
        if (!who) {
          log.warn({ clientId: client.id, username }, 'mqtt connection refused: bad credentials');
          done(authError('bad username or password'), false);
          return;
        }
        principals.set(client, who);
        done(null, true);
      },
      authorizePublish(client, packet, callback) {
        // client is null for messages the broker itself publishes.
        const who = client ? principals.get(client) : ({ kind: 'control-plane' } as const);
        if (who && access.mayPublish(who, packet.topic)) return callback(null);
        log.warn({ clientId: client?.id, topic: packet.topic }, 'mqtt publish refused by ACL');
        callback(new Error('publish not authorised'));
      },
      authorizeSubscribe(client, sub, callback) {
        const who = principals.get(client);
        if (who && access.maySubscribe(who, sub.topic)) return callback(null, sub);
        log.warn({ clientId: client.id, topic: sub.topic }, 'mqtt subscribe refused by ACL');
        callback(new Error('subscribe not authorised'));
      },
    });
    this.broker = broker;
    // No Nagle on broker sockets: a small packet would wait for a delayed ACK (~40 ms), so
    // chunk requests and PUBACKs would pace artifact delivery at a few dozen round trips a second.
    const server = createServer({ noDelay: true }, broker.handle);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.log.info({ host: this.opts.host, port: this.port }, 'embedded MQTT broker listening');
  }

  /**
   * First step of a shutdown: stop accepting connections and disconnect every
   * device, so the broker acknowledges no publish that the control plane's own
   * client would then never ingest. Devices keep such records in their outbox
   * and send them again to the next control plane.
   */
  async disconnectDevices(): Promise<void> {
    const broker = this.broker;
    const server = this.server;
    if (!broker || !server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const clients = (broker as unknown as { clients: Record<string, Client> }).clients;
    await Promise.all(
      Object.values(clients)
        .filter((c) => principals.get(c)?.kind === 'device')
        .map((c) => new Promise<void>((resolve) => c.close(() => resolve()))),
    );
    this.serverClosed = closed;
  }

  /**
   * Publishes from inside the broker, as if a client had: to the devices
   * subscribed, with no loopback connection, no parse and no copy between.
   * Resolves once the broker has handed the packet on; true when `payload`
   * is no longer referenced (a device topic whose device's connection has
   * written everything, or nobody subscribed), so the caller may reuse it.
   */
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 }): Promise<boolean> {
    const broker = this.broker;
    if (!broker) return Promise.reject(new Error('broker not started'));
    return new Promise((resolve, reject) => {
      broker.publish({ cmd: 'publish', topic, payload, qos: opts.qos, retain: false, dup: false }, (err) => {
        if (err) return reject(err);
        const deviceId = parseDeviceTopic(topic)?.deviceId;
        const clients = (broker as unknown as { clients: Record<string, { conn?: Socket } | undefined> }).clients;
        const conn = deviceId === undefined ? undefined : clients[deviceId]?.conn;
        // QoS 1 packets are kept for redelivery; only QoS 0 ones are done with once written.
        resolve(opts.qos === 0 && deviceId !== undefined && (conn === undefined || conn.writableLength === 0));
      });
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    const broker = this.broker;
    this.server = null;
    this.broker = null;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    if (this.serverClosed) await this.serverClosed;
    else if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.serverClosed = null;
  }
}
