/**
 * Publish-to-ingest latency of telemetry through the control plane's broker:
 * a device connection (its own mqtt.js client, in this process) publishes a
 * small valid telemetry window at QoS 1 every `intervalMs`, and the control
 * plane's ingest timestamps its arrival, before it waits for its batch (the
 * batching would hide what a delivery does to the path). Both ends share
 * this process's clock. Run it while a delivery goes on and while none
 * does, and compare the percentiles.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { deviceTopic, encodeJson, type TelemetryWindow } from '@perch/shared';
import type { ControlPlane } from '@perch/control-plane';

export class TelemetryProbe {
  private client: MqttClient | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;
  private readonly sent = new Map<number, number>();
  private latencies: number[] = [];
  private readonly topic: string;

  constructor(
    private readonly cp: ControlPlane,
    private readonly deviceId = 'bench-telemetry-probe',
    private readonly intervalMs = 10,
  ) {
    this.topic = deviceTopic(deviceId, 'telemetry');
    cp.services.ingest.onArrival((received) => {
      if (received.deviceId !== this.deviceId) return;
      const at = performance.now();
      // Still undecoded here (the writer decodes): the probe reads its own window's seq.
      const { seq } = JSON.parse(new TextDecoder().decode(received.payload)) as { seq: number };
      const sentAt = this.sent.get(seq);
      if (sentAt === undefined) return;
      this.sent.delete(seq);
      this.latencies.push(at - sentAt);
    });
  }

  async connect(): Promise<void> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${this.cp.mqttPort}`, { clientId: this.deviceId, ...(await this.cp.issueDeviceCredentials(this.deviceId)), reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    // As the agent's connection: no Nagle.
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    this.client = client;
  }

  /** Starts publishing; latencies gathered until `stop()`. */
  start(): void {
    this.latencies = [];
    this.sent.clear();
    this.timer = setInterval(() => this.publishOne(), this.intervalMs);
  }

  /** Stops publishing, waits for the last windows, returns their latencies (ms). */
  async stop(): Promise<number[]> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const end = Date.now() + 5000;
    while (this.sent.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return this.latencies;
  }

  async close(): Promise<void> {
    await this.client?.endAsync();
    this.client = null;
  }

  private publishOne(): void {
    const client = this.client;
    if (!client) return;
    const seq = ++this.seq;
    const now = Date.now();
    const window: TelemetryWindow = { deviceId: this.deviceId, seq, windowStart: now - this.intervalMs, windowEnd: now, model: null, cameras: [] };
    this.sent.set(seq, performance.now());
    client.publish(this.topic, encodeJson(window), { qos: 1 });
  }
}
