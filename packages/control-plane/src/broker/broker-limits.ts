import type { Client, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import { HeldPublishes } from './held-publishes.js';
import { LimitWarnings } from './limit-warnings.js';
import { guardPacketSize, type PacketSizeFraming } from './packet-size-guard.js';
import { PayloadLimits, type MaxPayloadBytes } from './payload-limits.js';
import { DEFAULT_PUBLISH_RATE, PublishRateLimiter, type PublishRateLimits } from './publish-rate-limiter.js';
import { DEFAULT_SLOW_CONSUMER, guardSlowConsumer, type SlowConsumerLimits } from './slow-consumer-guard.js';

export interface BrokerLimitsOptions extends SlowConsumerLimits {
  /** per-kind overrides of DEFAULT_MAX_PAYLOAD_BYTES */
  maxPayloadBytes: Partial<MaxPayloadBytes>;
  /** null: no rate limit */
  rate: PublishRateLimits | null;
}

export const DEFAULT_BROKER_LIMITS: BrokerLimitsOptions = { maxPayloadBytes: {}, rate: DEFAULT_PUBLISH_RATE, ...DEFAULT_SLOW_CONSUMER };

/** What each limit did, for one client or all of them. */
export interface LimitCounts {
  /** publishes over their topic's payload limit: acknowledged and dropped */
  oversizePublishes: number;
  /** connections closed for announcing a packet over the socket-level cap */
  oversizePackets: number;
  /** QoS 0 publishes dropped over the client's rate */
  rateDropped: number;
  /** QoS 1/2 publishes held back until the client's rate allowed them */
  rateDelayed: number;
  /** connections closed for being more than `rate.maxDelayMs` in debt */
  rateDisconnects: number;
  /** connections closed for not reading what the broker sent them */
  slowConsumerDisconnects: number;
}

export function zeroCounts(): LimitCounts {
  return { oversizePublishes: 0, oversizePackets: 0, rateDropped: 0, rateDelayed: 0, rateDisconnects: 0, slowConsumerDisconnects: 0 };
}

/**
 * Where a refused publish goes instead of its topic: aedes has no way for
 * authorizePublish to drop a message without closing the connection, so
 * the packet is emptied and re-addressed here. Wildcard subscriptions never
 * match a `$` topic, and no client may subscribe to it by name.
 */
export const DROPPED_TOPIC = '$perch/dropped';
const EMPTY = Buffer.alloc(0);

const SWEEP_MS = 60_000;

/**
 * The embedded broker's limits on clients other than the control plane:
 * payload bytes per topic kind (a packet over the largest is cut off at the
 * socket), a publish rate per client, and how much a subscriber may leave
 * unread. The control plane's own client and the broker's internal
 * publishes are trusted and not limited.
 */
export class BrokerLimits {
  readonly options: BrokerLimitsOptions;
  readonly payload: PayloadLimits;
  private readonly rate: PublishRateLimiter | null;
  private readonly warnings: LimitWarnings;
  private readonly framings = new WeakMap<Client, PacketSizeFraming>();
  private readonly cutForRate = new WeakSet<Client>();
  private readonly held = new WeakMap<Client, HeldPublishes>();
  private readonly totals = zeroCounts();
  private readonly perClient = new Map<string, LimitCounts>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    options: Partial<BrokerLimitsOptions>,
    private readonly log: Logger,
  ) {
    this.options = { ...DEFAULT_BROKER_LIMITS, ...options };
    this.payload = new PayloadLimits(this.options.maxPayloadBytes);
    const rate = this.options.rate;
    if (rate && rate.burstBytes < this.payload.largest) {
      throw new Error(`rate.burstBytes (${rate.burstBytes}) must be at least the largest payload allowed (${this.payload.largest}), or a QoS 0 publish that size could never pass`);
    }
    this.rate = rate ? new PublishRateLimiter(rate) : null;
    this.warnings = new LimitWarnings(log);
  }

  start(): void {
    this.sweeper = setInterval(() => {
      this.rate?.sweep();
      this.warnings.sweep();
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /** Totals, and the counts of each client id that ran into a limit. */
  get stats(): LimitCounts & { clients: Record<string, LimitCounts> } {
    return { ...this.totals, clients: Object.fromEntries([...this.perClient].map(([id, c]) => [id, { ...c }])) };
  }

  /** A new connection, before it has said who it is: packets over the device cap close it. */
  watch(client: Client): void {
    const framing = guardPacketSize(client.conn, this.payload.maxPacketBytes, (announced) => {
      const who = client.id ?? 'unknown';
      this.count(client.id ?? null, 'oversizePackets');
      this.warnings.warn(who, 'packet-size', { remoteAddress: remoteAddressOf(client), announcedBytes: announced, maxPacketBytes: this.payload.maxPacketBytes }, 'mqtt connection closed: packet over the size limit');
    });
    this.framings.set(client, framing);
  }

  /** A client that authenticated: the control plane may send packets of any size and is left to aedes's own backpressure. */
  admitted(client: Client, trusted: boolean): void {
    const framing = this.framings.get(client);
    if (trusted) {
      if (framing) framing.maxBytes = Number.POSITIVE_INFINITY;
      return;
    }
    guardSlowConsumer(client, this.options, (reason, bufferedBytes) => {
      this.count(client.id, 'slowConsumerDisconnects');
      this.warnings.warn(client.id, 'slow-consumer', { reason, bufferedBytes, maxOutgoingBytes: this.options.maxOutgoingBytes }, 'mqtt client disconnected: it does not read what it is sent');
    });
  }

  /**
   * Runs after the ACL allowed the publish. Over its topic's payload limit:
   * acknowledged and dropped, connection kept (an agent would resend a
   * refused QoS 1 message from its outbox for ever). Over the rate: QoS 0
   * dropped, QoS 1/2 held back, or the connection closed when too far behind.
   */
  admitPublish(client: Client | null, packet: PublishPacket, trusted: boolean, callback: (err?: Error | null) => void): void {
    if (trusted || !client) return callback(null);
    const bytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
    const limit = this.payload.limitFor(packet.topic);
    if (bytes > limit) {
      this.count(client.id, 'oversizePublishes');
      this.warnings.warn(client.id, 'payload-size', { topic: packet.topic, bytes, maxPayloadBytes: limit }, 'mqtt publish dropped: payload over the limit for its topic');
      drop(packet);
      return callback(null);
    }
    // A will is published as its client goes: nothing left to slow down.
    if (!this.rate || (client.closed && packet === (client as unknown as { will?: unknown }).will)) return callback(null);
    const now = performance.now();
    const verdict = this.rate.judge(client.id, packet.qos, bytes, now);
    const held = this.held.get(client);
    switch (verdict.kind) {
      case 'pass':
        // Behind the client's publishes still held, never before them.
        if (held && held.size > 0) held.hold(now, () => callback(null), now);
        else callback(null);
        return;
      case 'drop':
        this.count(client.id, 'rateDropped');
        this.warnings.warn(client.id, 'rate-drop', { topic: packet.topic, qos: packet.qos }, 'mqtt publish dropped: client over its publish rate');
        drop(packet);
        return callback(null);
      case 'delay':
        this.count(client.id, 'rateDelayed');
        this.warnings.warn(client.id, 'rate-hold', { topic: packet.topic, qos: packet.qos, delayMs: Math.round(verdict.ms) }, 'mqtt publish held back: client over its publish rate');
        this.heldFor(client).hold(now + verdict.ms, () => callback(null), now);
        return;
      case 'disconnect':
        // The rest of the chunk the client's packets came in is judged before the close takes effect.
        if (!this.cutForRate.has(client)) this.count(client.id, 'rateDisconnects');
        this.cutForRate.add(client);
        this.warnings.warn(client.id, 'rate-disconnect', { topic: packet.topic, qos: packet.qos, delayMs: Math.round(verdict.ms) }, 'mqtt client disconnected: too far over its publish rate');
        return callback(new Error('publish rate exceeded'));
    }
  }

  private heldFor(client: Client): HeldPublishes {
    let h = this.held.get(client);
    if (!h) {
      const created = new HeldPublishes();
      client.conn.once('close', () => created.releaseAll());
      this.held.set(client, created);
      h = created;
    }
    return h;
  }

  private count(clientId: string | null, what: keyof LimitCounts): void {
    this.totals[what]++;
    if (clientId === null) return;
    let c = this.perClient.get(clientId);
    if (!c) {
      c = zeroCounts();
      this.perClient.set(clientId, c);
    }
    c[what]++;
  }
}

/** Acknowledged and delivered to no one: the packet goes on to a topic nobody may subscribe to, empty. */
export function drop(packet: PublishPacket): void {
  packet.topic = DROPPED_TOPIC;
  packet.payload = EMPTY;
  packet.retain = false;
}

function remoteAddressOf(client: Client): string | undefined {
  return (client.conn as { remoteAddress?: string }).remoteAddress;
}
