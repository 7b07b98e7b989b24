import { Counter, Gauge, type Registry } from 'prom-client';
import type { LimitCounts } from '../broker/broker-limits.js';

/** What the embedded broker's limits did (`EmbeddedBroker.stats`): totals, and the ids of the clients that ran into one. */
export type BrokerLimitStats = LimitCounts & { clients: Readonly<Record<string, unknown>> };

/**
 * The embedded broker's limits (broker-limits.ts) as Prometheus series,
 * totals by reason. Never a label per client id: a fleet of thousands of
 * devices would make a series each; the log names the clients, once a
 * minute each.
 */
export function registerBrokerMetrics(registry: Registry, prefix: string, read: () => BrokerLimitStats): void {
  const registers = [registry];
  new Counter({
    name: `${prefix}broker_publishes_dropped_total`,
    help: 'MQTT publishes acknowledged and dropped by the broker, per reason: payload_size (over its topic kind limit), rate (QoS 0 over the client rate)',
    labelNames: ['reason'],
    registers,
    collect() {
      const s = read();
      this.reset();
      this.inc({ reason: 'payload_size' }, s.oversizePublishes);
      this.inc({ reason: 'rate' }, s.rateDropped);
    },
  });
  new Counter({
    name: `${prefix}broker_publishes_held_total`,
    help: 'MQTT QoS 1/2 publishes held back, unacknowledged, until the client rate allowed them',
    registers,
    collect() {
      this.reset();
      this.inc(read().rateDelayed);
    },
  });
  new Counter({
    name: `${prefix}broker_disconnects_total`,
    help: 'MQTT connections the broker closed, per reason: packet_size (a packet over the socket cap), rate (too far over the client rate), slow_consumer (not reading what it is sent)',
    labelNames: ['reason'],
    registers,
    collect() {
      const s = read();
      this.reset();
      this.inc({ reason: 'packet_size' }, s.oversizePackets);
      this.inc({ reason: 'rate' }, s.rateDisconnects);
      this.inc({ reason: 'slow_consumer' }, s.slowConsumerDisconnects);
    },
  });
  new Gauge({
    name: `${prefix}broker_limited_clients`,
    help: 'MQTT client ids that ran into any broker limit since the control plane started',
    registers,
    collect() {
      this.set(Object.keys(read().clients).length);
    },
  });
}
