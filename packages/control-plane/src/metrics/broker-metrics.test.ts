import { deviceTopic } from '@perch/shared';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMetrics, sampleValue, type ParsedMetrics } from '../../../agent/src/test-support/prometheus-text.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../broker/payload-limits.js';
import { startApiSite, type ApiSite } from '../test-support/api-site.js';

let site: ApiSite;

beforeAll(async () => {
  site = await startApiSite();
});
afterAll(() => site.stop());

async function scrape(): Promise<ParsedMetrics> {
  const res = await site.call(site.cp.adminToken, 'GET', '/metrics');
  expect(res.status).toBe(200);
  return parseMetrics(await res.text());
}

const STATUS_LIMIT = DEFAULT_MAX_PAYLOAD_BYTES.status ?? DEFAULT_MAX_PAYLOAD_BYTES.default;
const dropped = (m: ParsedMetrics, reason: string) => sampleValue(m, 'perch_cp_broker_publishes_dropped_total', { reason });

describe('broker limit metrics on /metrics', () => {
  it('count a publish over its payload limit as dropped for payload_size, with no series per client', async () => {
    const before = await scrape();
    expect(dropped(before, 'payload_size')).toBe(0);
    expect(dropped(before, 'rate')).toBe(0);
    for (const reason of ['packet_size', 'rate', 'slow_consumer']) expect(sampleValue(before, 'perch_cp_broker_disconnects_total', { reason })).toBe(0);
    expect(sampleValue(before, 'perch_cp_broker_publishes_held_total', {})).toBe(0);
    expect(sampleValue(before, 'perch_cp_broker_limited_clients', {})).toBe(0);

    const id = 'gate-oversize';
    const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${site.cp.mqttPort}`, { clientId: id, username: id, password: (await site.cp.issueDeviceCredentials(id)).password, reconnectPeriod: 0 });
    try {
      const topic = deviceTopic(id, 'status');
      // Within the limit: passes, counts nothing.
      await dev.publishAsync(topic, JSON.stringify({ deviceId: id, state: 'online', since: Date.now() }), { qos: 1 });
      expect(dropped(await scrape(), 'payload_size')).toBe(0);
      // One byte over the status limit: acknowledged (the QoS 1 publish resolves) and dropped.
      await dev.publishAsync(topic, Buffer.alloc(STATUS_LIMIT + 1, 0x20), { qos: 1 });
    } finally {
      await dev.endAsync();
    }

    const after = await scrape();
    expect(dropped(after, 'payload_size')).toBe(1);
    expect(dropped(after, 'rate')).toBe(0);
    expect(sampleValue(after, 'perch_cp_broker_limited_clients', {})).toBe(1);
    expect(after.families.get('perch_cp_broker_publishes_dropped_total')).toBe('counter');
    expect(site.cp.stats.broker.oversizePublishes).toBe(1);
    // Totals by reason only: the client id appears in no broker series.
    const broker = after.samples.filter((s) => s.name.startsWith('perch_cp_broker_'));
    expect(broker.length).toBeGreaterThan(0);
    for (const s of broker) {
      expect(Object.keys(s.labels).filter((k) => k !== 'reason'), s.name).toEqual([]);
      expect(JSON.stringify(s), s.name).not.toContain(id);
    }
  });
});
