import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../broker/embedded-broker.js';
import { createLogger } from '../logger.js';
import { ControlPlaneBus } from './control-plane-bus.js';

const noDevices = { authenticateDevice: () => ({ ok: false as const, reason: 'no devices in this test' }) };

/** A loopback port nothing listens on: taken from the OS, then let go. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('control plane bus', () => {
  it('gives up on an unreachable broker at its start deadline, with the URL and the attempts in the error', async () => {
    const url = `mqtt://127.0.0.1:${await deadPort()}`;
    const bus = new ControlPlaneBus({ url, username: 'cp', password: 'x', clientId: 'cp-test', startTimeoutMs: 2500 }, createLogger('silent'));
    await expect(bus.start(['perch/v1/devices/+/telemetry'])).rejects.toThrow(new RegExp(`no connection to the MQTT broker at ${url} within 3 s \\(\\d+ attempts\\)`));
    await expect(bus.publish('x', 'y')).rejects.toThrow(/bus not started/);
    await bus.stop();
  });

  it('waits for a broker that comes up after it, and fails at once on bad credentials', async () => {
    const port = await deadPort();
    const log = createLogger('silent');
    const bus = new ControlPlaneBus({ url: `mqtt://127.0.0.1:${port}`, username: 'cp', password: 'right', clientId: 'cp-late', startTimeoutMs: 30_000 }, log);
    const started = bus.start(['perch/v1/devices/+/telemetry']);
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port, controlPlaneUsername: 'cp', controlPlanePassword: 'right', devices: noDevices }, log);
    await new Promise((r) => setTimeout(r, 1500));
    await broker.start();
    try {
      await started;
      await bus.publish('perch/v1/devices/d1/desired', 'x', { qos: 1 });
      await bus.stop();
      const wrong = new ControlPlaneBus({ url: `mqtt://127.0.0.1:${port}`, username: 'cp', password: 'wrong', clientId: 'cp-wrong', startTimeoutMs: 30_000 }, log);
      await expect(wrong.start([])).rejects.toThrow(/Bad username or password|Not authorized/i);
    } finally {
      await broker.stop();
    }
  });
});
