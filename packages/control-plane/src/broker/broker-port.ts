import type { ChunkPublisher } from '../artifacts/chunk-server.js';
import type { DeviceTopicKind } from '@perch/shared';
import type { BusOptions } from '../bus/control-plane-bus.js';
import type { BrokerPresence } from '../telemetry/fleet-telemetry-feature.js';
import type { DeviceIntakeHandler, DeviceIntakeStats } from './device-intake.js';
import type { EmbeddedBrokerStats } from './embedded-broker.js';

/**
 * The broker the devices connect to, as the control plane uses it: the
 * embedded aedes (`embedded-broker-port.ts`) or an external broker the
 * control plane is only a client of (`external-broker.ts`). What only the
 * embedded broker can do (end a session, say who is connected, count what
 * its limits did) is optional here, and the control plane does without.
 */
export interface BrokerPort extends BrokerPresence {
  readonly kind: 'embedded' | 'external';
  /** Where and as whom the control plane's bus connects. */
  readonly busOptions: BusOptions;
  /** The embedded broker's plain MQTT port and TLS port; null for an external broker. */
  readonly mqttPort: number | null;
  readonly mqttTlsPort: number | null;
  /** What the embedded broker's limits did; zeros for an external broker, whose own metrics say it. */
  readonly stats: EmbeddedBrokerStats;
  /** Ends a device's live session at once; undefined where the broker's own revocation does it. */
  readonly endSession: ((deviceId: string) => Promise<boolean>) | undefined;
  /** Where chunk frames go: into the embedded broker directly, else through the bus (`publish`). */
  chunkPublisher(bus: ChunkPublisher): ChunkPublisher;
  /**
   * Device messages of these kinds taken inside the broker and acknowledged
   * only once `take` has them durable (device-intake.ts); returns the kinds
   * it took, which the bus then need not subscribe to. An external broker
   * takes none: they reach the bus, acknowledged by the broker on receipt.
   */
  takeDeviceMessages(kinds: readonly DeviceTopicKind[], take: DeviceIntakeHandler): readonly DeviceTopicKind[];
  /** What the intake took and refused; null without one. */
  readonly intakeStats: DeviceIntakeStats | null;
  /** After the bus has subscribed: from now on devices are heard, so they may connect (an external broker queues for the bus's session). */
  openForDevices(): void;
  /** First step of a shutdown, before the bus goes: take no publish the bus would then miss. */
  quiesce(): Promise<void>;
  stop(): Promise<void>;
}
