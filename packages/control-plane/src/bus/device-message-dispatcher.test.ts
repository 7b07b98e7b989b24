import { deviceTopic, encodeJson, type DetectionEvent } from '@perch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventIngestHandler } from '../ingest/event-ingest.js';
import { createLogger } from '../logger.js';
import { tempDatabase } from '../test-support/telemetry-windows.js';
import { DeviceMessageDispatcher } from './device-message-dispatcher.js';

let t: ReturnType<typeof tempDatabase>;
let dispatcher: DeviceMessageDispatcher;

const event = (seq: number): DetectionEvent => ({ deviceId: 'cam-box', seq, eventId: `e${seq}`, kind: 'new', cameraId: 'front', label: 'cat', topConfidence: 0.9, startedAt: 1000, at: 1000 + seq });
const send = (seq: number, acknowledged: boolean) => dispatcher.dispatch(deviceTopic('cam-box', 'events'), encodeJson(event(seq)), acknowledged);
const stored = () => t.db.prepare('SELECT seq FROM detection_events ORDER BY seq').pluck().all();

beforeEach(() => {
  t = tempDatabase();
  dispatcher = new DeviceMessageDispatcher(createLogger('silent')).register(eventIngestHandler(t.db));
});

afterEach(() => t.close());

describe('device message dispatcher', () => {
  it('refuses a message it could not store when the device is still waiting for its acknowledgement, and drops it when it is not', async () => {
    expect(send(1, false)).toBeUndefined();
    // A database that refuses writes, for real.
    t.db.pragma('query_only = ON');
    await expect(send(2, false)).rejects.toThrow(/readonly/i);
    // Through an external broker it was acknowledged already: logged and dropped, nothing to refuse.
    expect(send(3, true)).toBeUndefined();
    expect(dispatcher.stats).toMatchObject({ handled: 1, dropped: 2 });
    t.db.pragma('query_only = OFF');
    // The device sends the refused one again.
    expect(send(2, false)).toBeUndefined();
    expect(stored()).toEqual([1, 2]);
  });

  it('drops a malformed message at once, acknowledged or not: sending it again would not help', () => {
    expect(dispatcher.dispatch(deviceTopic('cam-box', 'events'), Buffer.from('{"seq":'), false)).toBeUndefined();
    expect(dispatcher.dispatch(deviceTopic('other-box', 'events'), encodeJson(event(1)), false)).toBeUndefined();
    expect(dispatcher.stats).toMatchObject({ handled: 0, dropped: 2 });
    expect(stored()).toEqual([]);
  });
});
