import { Gauge, type Registry } from 'prom-client';
import type { LimitCounts } from '../broker/broker-limits.js';
import { mirroredCounter } from './mirrored-counter.js';

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
  mirroredCounter(
    registers,
    `${prefix}broker_publishes_dropped_total`,
    'MQTT publishes acknowledged and dropped by the broker, per reason: payload_size (over its topic kind limit), rate (QoS 0 over the client rate)',
    () => {
      const s = read();
      return { payload_size: s.oversizePublishes, rate: s.rateDropped };
    },
    'reason',
  );
  mirroredCounter(registers, `${prefix}broker_publishes_held_total`, 'MQTT QoS 1/2 publishes held back, unacknowledged, until the client rate allowed them', () => read().rateDelayed);
  mirroredCounter(
    registers,
    `${prefix}broker_disconnects_total`,
    'MQTT connections the broker closed, per reason: packet_size (a packet over the socket cap), rate (too far over the client rate), slow_consumer (not reading what it is sent)',
    () => {
      const s = read();
      return { packet_size: s.oversizePackets, rate: s.rateDisconnects, slow_consumer: s.slowConsumerDisconnects };
    },
    'reason',
  );
  new Gauge({
    name: `${prefix}broker_limited_clients`,
    help: 'MQTT client ids that ran into any broker limit since the control plane started',
    registers,
    collect() {
      this.set(Object.keys(read().clients).length);
    },
  });
}
