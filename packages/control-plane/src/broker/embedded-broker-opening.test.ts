import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { EmbeddedBroker } from './embedded-broker.js';

/*
 * A broker that opens to devices only once the control plane can hear them:
 * before, a device's publish would be acknowledged and never ingested.
 */

const anyDevice = { authenticateDevice: (deviceId: string) => ({ ok: true as const, principal: { kind: 'device' as const, deviceId } }) };
let broker: EmbeddedBroker | null = null;

afterEach(async () => {
  await broker?.stop();
  broker = null;
});

describe('embedded broker opening to devices', () => {
  it('refuses devices with CONNACK 3 (server unavailable) until opened, while the control plane gets in; then lets them in', async () => {
    broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, controlPlaneUsername: 'cp', controlPlanePassword: 'cp-secret', devices: anyDevice, openToDevices: false }, createLogger('silent'));
    await broker.start();
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const early = await mqtt.connectAsync(url, { clientId: 'gate-1', username: 'gate-1', password: 'x', reconnectPeriod: 0 }).then(
      () => null,
      (err: Error & { code?: number }) => err,
    );
    expect(early?.code).toBe(3);
    const cp = await mqtt.connectAsync(url, { clientId: 'cp-1', username: 'cp', password: 'cp-secret', reconnectPeriod: 0 });
    broker.openForDevices();
    const device = await mqtt.connectAsync(url, { clientId: 'gate-1', username: 'gate-1', password: 'x', reconnectPeriod: 0 });
    expect(device.connected).toBe(true);
    await device.endAsync();
    await cp.endAsync();
  });
});
