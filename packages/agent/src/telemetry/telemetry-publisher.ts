import { encodeJson, telemetryWindowSchema, type TelemetryWindow } from '@perch/shared';
import type { MqttConnection } from '../mqtt/connection.js';

/**
 * Where a finished window goes. Today: straight to MQTT at QoS 1 (mqtt.js
 * holds it while the link is down, in memory). The store-and-forward outbox
 * replaces this one class.
 */
export class TelemetryPublisher {
  constructor(private readonly connection: MqttConnection) {}

  async publish(window: TelemetryWindow): Promise<void> {
    // Checked against the contract on the way out too: a bug here must not reach ingestion.
    const valid = telemetryWindowSchema.parse(window);
    await this.connection.publish('telemetry', encodeJson(valid), { qos: 1 });
  }
}
