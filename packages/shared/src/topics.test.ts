import { describe, expect, it } from 'vitest';
import { allDevicesFilter, deviceTopic, parseDeviceTopic, TOPIC_PREFIX } from './topics.js';

describe('topic tree', () => {
  it('builds and parses every device topic kind under the versioned prefix', () => {
    for (const kind of ['desired', 'reported', 'status', 'telemetry', 'events', 'artifact/request', 'artifact/chunk'] as const) {
      const topic = deviceTopic('box-7', kind);
      expect(topic.startsWith(`${TOPIC_PREFIX}/devices/box-7/`)).toBe(true);
      expect(parseDeviceTopic(topic)).toMatchObject({ deviceId: 'box-7', kind });
    }
    expect(parseDeviceTopic(deviceTopic('box-7', 'desired'))?.direction).toBe('to-device');
    expect(parseDeviceTopic(deviceTopic('box-7', 'telemetry'))?.direction).toBe('from-device');
  });

  it('rejects device ids that would break the tree and topics outside the contract', () => {
    for (const bad of ['', 'a/b', '+', '#', '.hidden', 'x'.repeat(65)]) {
      expect(() => deviceTopic(bad, 'desired')).toThrow();
    }
    expect(parseDeviceTopic('perch/v0/devices/a/desired')).toBeNull();
    expect(parseDeviceTopic(`${TOPIC_PREFIX}/devices/a/unknown`)).toBeNull();
    expect(parseDeviceTopic(`${TOPIC_PREFIX}/devices/+/desired`)).toBeNull();
    expect(parseDeviceTopic(`${TOPIC_PREFIX}/devices//desired`)).toBeNull();
    expect(allDevicesFilter('telemetry')).toBe(`${TOPIC_PREFIX}/devices/+/telemetry`);
  });
});
