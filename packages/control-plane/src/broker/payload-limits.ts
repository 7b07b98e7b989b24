import { parseDeviceTopic, type DeviceTopicKind } from '@perch/shared';

/**
 * The most payload bytes a client may publish, per device topic kind;
 * `default` covers every other topic and kind (provisioning, kinds added
 * later), so a new topic starts small until someone sizes it.
 */
export type MaxPayloadBytes = Partial<Record<DeviceTopicKind, number>> & { default: number };

const KiB = 1024;

/**
 * Sized from the schemas in @perch/shared with room to spare: a telemetry
 * window of 64 cameras with a few dozen labels each is about 200 KiB, a
 * reported state of 64 cameras with their last errors about 80 KiB, the
 * rest are a few hundred bytes. Kinds only the control plane publishes
 * (desired, artifact/chunk, metadata/response) are not limited: the control
 * plane is trusted and a device may not publish them at all.
 */
export const DEFAULT_MAX_PAYLOAD_BYTES: MaxPayloadBytes = {
  status: 4 * KiB,
  reported: 128 * KiB,
  telemetry: 256 * KiB,
  events: 16 * KiB,
  'artifact/request': 4 * KiB,
  'metadata/request': 4 * KiB,
  default: 8 * KiB,
};

/** Room around the largest payload for its topic, packet id and properties in the socket-level cap. */
const PACKET_OVERHEAD_BYTES = 4 * KiB;

export class PayloadLimits {
  /** The largest MQTT packet (remaining length) a client that is not the control plane may send at all. */
  readonly maxPacketBytes: number;
  private readonly table: MaxPayloadBytes;

  constructor(overrides: Partial<MaxPayloadBytes> = {}) {
    this.table = { ...DEFAULT_MAX_PAYLOAD_BYTES, ...overrides } as MaxPayloadBytes;
    this.maxPacketBytes = this.largest + PACKET_OVERHEAD_BYTES;
  }

  /** The largest payload any topic allows. */
  get largest(): number {
    return Math.max(...Object.values(this.table).filter((v): v is number => v !== undefined));
  }

  limitFor(topic: string): number {
    const kind = parseDeviceTopic(topic)?.kind;
    return (kind === undefined ? undefined : this.table[kind]) ?? this.table.default;
  }
}
