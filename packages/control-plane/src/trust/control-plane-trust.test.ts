import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic, encodeJson, metadataResponseSchema, type MetadataResponse } from '@perch/shared';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../agent/src/test-support/harness.js';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { createLogger } from '../logger.js';

let dir: string;
let cp: ControlPlane;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'perch-cp-trust-'));
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'silent' } },
  });
  cp = new ControlPlane(config, createLogger('silent'));
  await cp.start();
});

afterAll(async () => {
  await cp.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a control plane runs its TUF repository', () => {
  it('serves the same root over the API and to a device over MQTT', async () => {
    const res = await fetch(`http://127.0.0.1:${cp.httpPort}/api/v1/trust/root`);
    expect(res.status).toBe(200);
    const root = (await res.json()) as { signed: { version: number; roles: Record<string, unknown> } };
    expect(root.signed.version).toBe(1);
    expect(Object.keys(root.signed.roles)).toContain('desired');

    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${cp.mqttPort}`, { clientId: 'gate-1', username: 'gate-1', password: (await cp.issueDeviceCredentials('gate-1')).password, reconnectPeriod: 0 });
    try {
      const answers: MetadataResponse[] = [];
      device.on('message', (_t, payload) => answers.push(metadataResponseSchema.parse(JSON.parse(payload.toString('utf8')))));
      await device.subscribeAsync(deviceTopic('gate-1', 'metadata/response'), { qos: 1 });
      // Asked again until answered: the control plane's subscription may still be on its way to the broker.
      const answer = await waitFor('the root over MQTT', async () => {
        const found = answers.find((a) => a.requestId === 'r1');
        if (!found) await device.publishAsync(deviceTopic('gate-1', 'metadata/request'), encodeJson({ requestId: 'r1', name: '1.root.json' }), { qos: 1 });
        return found;
      });
      expect(answer.status === 200 && JSON.parse(answer.body)).toEqual(root);
    } finally {
      await device.endAsync();
    }
  });
});
