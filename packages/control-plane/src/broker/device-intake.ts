import { parseDeviceTopic, type DeviceTopicKind, type ParsedDeviceTopic } from '@perch/shared';
import type { PublishPacket } from 'aedes';
import type { Principal } from './broker-access.js';
import { drop } from './broker-limits.js';

/**
 * Takes one device message: undefined when it is dealt with at once, else a
 * promise that settles once it is durable (resolves) or was not kept, so the
 * device must send it again (rejects).
 */
export type DeviceIntakeHandler = (device: ParsedDeviceTopic, topic: string, payload: Buffer) => Promise<void> | undefined;

export interface DeviceIntakeStats {
  /** messages taken and acknowledged */
  taken: number;
  /** messages not kept (the control plane stopping, a backlog over its bound): not acknowledged, the device sends them again */
  refused: number;
}

/**
 * Device messages of some kinds (the durable ones: telemetry windows and
 * events) taken inside the embedded broker while it authorises their
 * publish, before aedes writes the PUBACK: the acknowledgement then means
 * committed. A device whose messages wait for a commit waits for its
 * PUBACKs too, and with its in-flight window full it sends no more, which
 * is the back-pressure a slow disk needs. A message not kept is refused,
 * which for MQTT 3.1.1 ends the connection unacknowledged; the device sends
 * it again from its outbox when it is back. Taken messages go no further
 * into the broker, retained or not: only the control plane may read these
 * topics, and it has them.
 */
export class DeviceIntake {
  private kinds: ReadonlySet<DeviceTopicKind> = new Set();
  private take: DeviceIntakeHandler | null = null;
  readonly stats: DeviceIntakeStats = { taken: 0, refused: 0 };

  /** The kinds taken from now on, and what takes them. */
  set(kinds: readonly DeviceTopicKind[], take: DeviceIntakeHandler): void {
    this.kinds = new Set(kinds);
    this.take = take;
  }

  /** After the ACL and the limits let `packet` through: calls back when it may be acknowledged, or with why not. */
  admit(who: Principal, packet: PublishPacket, callback: (err: Error | null) => void): void {
    const take = this.take;
    if (!take || who.kind !== 'device') return callback(null);
    const device = parseDeviceTopic(packet.topic);
    if (device === null || !this.kinds.has(device.kind)) return callback(null);
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const pending = take(device, packet.topic, payload);
    if (pending === undefined) return this.taken(packet, callback);
    pending.then(
      () => this.taken(packet, callback),
      (err: unknown) => {
        this.stats.refused++;
        callback(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  private taken(packet: PublishPacket, callback: (err: Error | null) => void): void {
    this.stats.taken++;
    drop(packet);
    callback(null);
  }
}
