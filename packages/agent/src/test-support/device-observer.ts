import type { MqttClient } from 'mqtt';
import {
  decodeJson,
  detectionEventSchema,
  deviceStatusSchema,
  oneDeviceFilter,
  parseDeviceTopic,
  reportedStateSchema,
  telemetryWindowSchema,
  type DetectionEvent,
  type DeviceStatus,
  type ReportedState,
  type TelemetryWindow,
} from '@perch/shared';
import { connectAsync } from './control-plane-double.js';

/**
 * Watches everything a device publishes, decoding it with the contract's
 * schemas: what the agent sends must parse, or the test fails.
 */
export class DeviceObserver {
  readonly reported: ReportedState[] = [];
  readonly telemetry: TelemetryWindow[] = [];
  readonly status: DeviceStatus[] = [];
  readonly events: DetectionEvent[] = [];
  readonly invalid: string[] = [];
  private client: MqttClient | null = null;

  constructor(
    private readonly url: string,
    private readonly deviceId: string,
    private readonly credentials?: { username: string; password: string },
  ) {}

  async start(): Promise<void> {
    const client = await connectAsync(this.url, `observer-${this.deviceId}`, this.credentials);
    this.client = client;
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    await client.subscribeAsync(oneDeviceFilter(this.deviceId), { qos: 1 });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
  }

  get lastReported(): ReportedState | undefined {
    return this.reported.at(-1);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parsed = parseDeviceTopic(topic);
    if (!parsed || payload.length === 0) return;
    const record = <T>(list: T[], d: { ok: true; value: T } | { ok: false; error: string }) => {
      if (d.ok) list.push(d.value);
      else this.invalid.push(`${parsed.kind}: ${d.error}`);
    };
    if (parsed.kind === 'reported') record(this.reported, decodeJson(reportedStateSchema, payload));
    else if (parsed.kind === 'telemetry') record(this.telemetry, decodeJson(telemetryWindowSchema, payload));
    else if (parsed.kind === 'status') record(this.status, decodeJson(deviceStatusSchema, payload));
    else if (parsed.kind === 'events') record(this.events, decodeJson(detectionEventSchema, payload));
  }
}
