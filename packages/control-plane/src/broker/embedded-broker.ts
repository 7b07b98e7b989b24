import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { parseDeviceTopic } from '@perch/shared';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
import { indexedRetainedPersistence } from './indexed-retained-persistence.js';
import { BrokerAccess, type BrokerAccessOptions, type Principal } from './broker-access.js';
import { BrokerLimits, type BrokerLimitsOptions, type LimitCounts } from './broker-limits.js';
import { DeviceIntake } from './device-intake.js';
import { brokerTlsServerOptions, hasUnverifiedClientCertificate, type BrokerTlsOptions } from './broker-tls.js';

export interface EmbeddedBrokerOptions extends BrokerAccessOptions {
  host: string;
  port: number;
  /** payload, rate and slow-consumer limits on clients other than the control plane (broker-limits.ts) */
  limits?: Partial<BrokerLimitsOptions>;
  /** MQTT over TLS on `tls.port` (on `host`); plain MQTT then listens on loopback only, for the control plane's own client */
  tls?: BrokerTlsOptions | undefined;
  /** false: devices are refused until openForDevices() (the control plane opens once its client has subscribed); default true */
  openToDevices?: boolean;
}

export type EmbeddedBrokerStats = LimitCounts & { connectedClients: number; clients: Record<string, LimitCounts> };

const principals = new WeakMap<Client, Principal>();

function authError(message: string, returnCode: 3 | 4 | 5 = 4): Error & { returnCode: number } {
  // 3 = server unavailable, 4 = bad username or password, 5 = not authorised (MQTT 3.1.1 CONNACK).
  return Object.assign(new Error(message), { returnCode });
}

/** aedes keeps its live clients by id, untyped. */
function liveClients(broker: Aedes): Record<string, Client | undefined> {
  return (broker as unknown as { clients: Record<string, Client | undefined> }).clients;
}

/** The aedes broker inside the control plane process, on a TCP port (and a TLS one), with limits on its clients (broker-limits.ts). */
export class EmbeddedBroker {
  /** Devices are refused (CONNACK 3, they retry with backoff) until the control plane can hear them: see open(). */
  private openToDevices: boolean;
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private tlsServer: Server | null = null;
  private serverClosed: Promise<void> | null = null;
  private readonly access: BrokerAccess;
  private readonly limits: BrokerLimits;
  /** Device messages the control plane takes before they are acknowledged (device-intake.ts). */
  readonly intake = new DeviceIntake();

  constructor(
    private readonly opts: EmbeddedBrokerOptions,
    private readonly log: Logger,
  ) {
    this.openToDevices = opts.openToDevices ?? true;
    this.access = new BrokerAccess(opts);
    this.limits = new BrokerLimits(opts.limits ?? {}, log);
  }

  get port(): number {
    const addr = this.server?.address() as AddressInfo | null;
    if (!addr) throw new Error('broker not started');
    return addr.port;
  }

  /** The MQTT-over-TLS port, or null without TLS. */
  get tlsPort(): number | null {
    const addr = this.tlsServer?.address() as AddressInfo | null | undefined;
    return addr ? addr.port : null;
  }

  get connectedClients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  /** What the limits did (broker-limits.ts), in total and per client id that ran into one. */
  get stats(): EmbeddedBrokerStats {
    return { connectedClients: this.connectedClients, ...this.limits.stats };
  }

  /** Whether a client with this id holds a connection now (the presence sweeper spares connected devices). */
  isConnected(clientId: string): boolean {
    return this.broker ? liveClients(this.broker)[clientId] !== undefined : false;
  }

  /** Lets devices in: called once the control plane's own client has its subscriptions. */
  openForDevices(): void {
    this.openToDevices = true;
  }

  async start(): Promise<void> {
    const access = this.access;
    const limits = this.limits;
    const intake = this.intake;
    const log = this.log;
    // Read first: bad TLS files stop the start before anything listens.
    const tlsOptions = this.opts.tls ? brokerTlsServerOptions(this.opts.tls) : null;
    const isLive = (id: string) => this.broker !== null && liveClients(this.broker)[id] !== undefined;
    const closedToDevices = () => !this.openToDevices;
    const broker = await Aedes.createBroker({
      // Indexed retained messages: a fleet's subscriptions would otherwise cost N^2 to connect.
      persistence: indexedRetainedPersistence(),
      // No cap on publishes in flight inside the broker: past aedes's 100, mqemitter queues the rest and
      // works through the queue by recursion, and thousands of devices gone at once (their retained wills)
      // with the control plane stopping overflowed the stack. Devices' own in-flight limits bound it instead.
      concurrency: 0,
      authenticate(client, username, password, done) {
        const admission = access.authenticate(client.id, username, password, isLive);
        if (!admission.ok) {
          log.warn({ clientId: client.id, username, reason: admission.reason }, 'mqtt connection refused');
          done(authError(admission.reason, admission.returnCode), false);
          return;
        }
        if (admission.principal.kind !== 'control-plane' && closedToDevices()) {
          // Until the control plane's own client has subscribed, a device's publish would be acknowledged and never heard.
          done(authError('the control plane is starting', 3), false);
          return;
        }
        principals.set(client, admission.principal);
        done(null, true);
      },
      authorizePublish(client, packet, callback) {
        // client is null for messages the broker itself publishes.
        const who = client ? principals.get(client) : ({ kind: 'control-plane' } as const);
        if (who && access.mayPublish(who, packet.topic)) {
          return limits.admitPublish(client, packet, who.kind === 'control-plane', (err) => (err ? callback(err) : intake.admit(who, packet, callback)));
        }
        log.warn({ clientId: client?.id, topic: packet.topic }, 'mqtt publish refused by ACL');
        callback(new Error('publish not authorised'));
      },
      authorizeSubscribe(client, sub, callback) {
        const who = principals.get(client);
        if (who && access.maySubscribe(who, sub.topic)) return callback(null, sub);
        log.warn({ clientId: client.id, topic: sub.topic }, 'mqtt subscribe refused by ACL');
        // A null grant is SUBACK 0x80: the client learns it was refused, as from any broker.
        callback(null, null);
      },
    });
    this.broker = broker;
    broker.on('client', (client) => limits.admitted(client, principals.get(client)?.kind === 'control-plane'));
    limits.start();
    const accept = (conn: Duplex): void => limits.watch(broker.handle(conn));
    // No Nagle on broker sockets: a small packet would wait for a delayed ACK (~40 ms), so
    // chunk requests and PUBACKs would pace artifact delivery at a few dozen round trips a second.
    const server = createServer({ noDelay: true }, accept);
    this.server = server;
    // With TLS, plain MQTT stays for the control plane's own client, on loopback only; devices use TLS.
    const plainHost = tlsOptions ? '127.0.0.1' : this.opts.host;
    await listen(server, this.opts.port, plainHost);
    this.log.info({ host: plainHost, port: this.port }, 'embedded MQTT broker listening');
    if (tlsOptions && this.opts.tls) {
      const tlsServer = createTlsServer({ ...tlsOptions, noDelay: true }, (conn: TLSSocket) => {
        if (hasUnverifiedClientCertificate(conn)) {
          log.warn({ remoteAddress: conn.remoteAddress, reason: conn.authorizationError }, 'mqtts connection refused: client certificate does not verify');
          conn.destroy();
          return;
        }
        accept(conn);
      });
      // A failed handshake (a plain MQTT client, an untrusted certificate) concerns that connection only.
      tlsServer.on('tlsClientError', (err, conn) => log.debug({ err: err.message, remoteAddress: conn.remoteAddress }, 'mqtts handshake failed'));
      this.tlsServer = tlsServer;
      await listen(tlsServer, this.opts.tls.port, this.opts.host);
      this.log.info({ host: this.opts.host, port: this.tlsPort }, 'embedded MQTT broker listening with TLS');
    }
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
    const closed = closeAll([server, this.tlsServer]);
    const clients = (broker as unknown as { clients: Record<string, Client> }).clients;
    const devices = Object.values(clients).filter((c) => principals.get(c)?.kind !== 'control-plane');
    // Without their wills: the devices did not go offline, the control plane is going away (their
    // presence is settled when they reconnect, or by the sweeper).
    for (const c of devices) (c as unknown as { will: unknown }).will = null;
    await Promise.all(devices.map((c) => new Promise<void>((resolve) => c.close(() => resolve()))));
    this.serverClosed = closed;
  }

  /** Ends one client's session now (a revoked device); its will goes out as for a lost link. True when one was connected. */
  disconnectClient(clientId: string): Promise<boolean> {
    const client = this.broker ? liveClients(this.broker)[clientId] : undefined;
    if (!client) return Promise.resolve(false);
    return new Promise((resolve) => client.close(() => resolve(true)));
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
        // Deliveries to a device do not wait for its socket to drain (slow-consumer-guard.ts); this
        // publisher, the chunk server, still does, so its output budget counts bytes not yet written.
        if (opts.qos === 0 && conn && conn.writableNeedDrain && !conn.destroyed) {
          const settled = (): void => {
            conn.off('drain', settled);
            conn.off('close', settled);
            resolve(!conn.destroyed && conn.writableLength === 0);
          };
          conn.on('drain', settled);
          conn.on('close', settled);
          return;
        }
        // QoS 1 packets are kept for redelivery; only QoS 0 ones are done with once written.
        resolve(opts.qos === 0 && deviceId !== undefined && (conn === undefined || conn.writableLength === 0));
      });
    });
  }

  async stop(): Promise<void> {
    const servers = [this.server, this.tlsServer];
    const broker = this.broker;
    this.server = null;
    this.tlsServer = null;
    this.broker = null;
    this.limits.stop();
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    if (this.serverClosed) await this.serverClosed;
    else await closeAll(servers);
    this.serverClosed = null;
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function closeAll(servers: (Server | null)[]): Promise<void> {
  await Promise.all(servers.map((s) => (s ? new Promise<void>((resolve) => s.close(() => resolve())) : undefined)));
}
