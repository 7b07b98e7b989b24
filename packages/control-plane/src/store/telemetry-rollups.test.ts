import { binIndex, emptyHistogram, histogramQuantile, LATENCY_SPEC, shadowWindowSchema, type ShadowWindow, type TelemetryWindow } from '@perch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { tempDatabase, telemetryWindow, type CameraSpec } from '../test-support/telemetry-windows.js';
import { DevicePresenceStore } from './device-presence-store.js';
import { TelemetryRollups } from './telemetry-rollups.js';
import { TelemetryStore } from './telemetry-store.js';

/** An hour boundary, so minute and hour buckets are easy to name. */
const T = 3_600_000 * 472_222;
const MIN = 60_000;
const HOUR = 3_600_000;

let t: ReturnType<typeof tempDatabase>;
let rollups: TelemetryRollups;
let writer: TelemetryBatchWriter;

const repeat = (v: number, n: number) => new Array<number>(n).fill(v);
const front: CameraSpec = { id: 'front', framesReceived: 10, framesInferred: 9, framesDropped: 1, inferenceErrors: 0, classCounts: { cat: 6, dog: 3 }, latencies: repeat(5.5, 10) };
const back: CameraSpec = { id: 'back', framesReceived: 20, framesInferred: 18, framesDropped: 2, inferenceErrors: 1, classCounts: { cat: 1, empty: 17 }, latencies: repeat(12.5, 10) };

/** Writes a window, and the rollups with it (they are written behind the windows otherwise). */
function send(device: string, seq: number, start: number, cameras: CameraSpec[]) {
  const result = writer.write([{ window: telemetryWindow(device, seq, { start, cameras }), receivedAt: start + 10_000 }]);
  writer.flushState();
  return result;
}

function addToGroup(device: string, group: string) {
  t.db.prepare('INSERT INTO device_groups (device_id, group_name) VALUES (?, ?)').run(device, group);
}

beforeEach(() => {
  t = tempDatabase();
  rollups = new TelemetryRollups(t.db);
  writer = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), rollups, new DevicePresenceStore(t.db));
  send('a', 0, T, [front, back]);
  send('a', 1, T + 30_000, [front]);
  send('a', 2, T + MIN, [back]);
  send('a', 3, T + HOUR + 5 * MIN, [front]);
});

afterEach(() => t.close());

describe('device rollups', () => {
  it('adds windows into the minute and the hour their start falls in', () => {
    const minutes = rollups.forDevice('a', 'minute', T, T + 2 * HOUR);
    expect(minutes.map((r) => [r.bucketStart - T, r.windows])).toEqual([[0, 2], [MIN, 1], [HOUR + 5 * MIN, 1]]);
    // Minute 0: seq 0 (front + back) and seq 1 (front).
    expect(minutes[0]).toMatchObject({
      framesReceived: 10 + 20 + 10,
      framesInferred: 9 + 18 + 9,
      framesDropped: 1 + 2 + 1,
      inferenceErrors: 1,
      classCounts: { cat: 6 + 1 + 6, dog: 3 + 3, empty: 17 },
    });
    const hours = rollups.forDevice('a', 'hour', T, T + 2 * HOUR);
    expect(hours.map((r) => [r.bucketStart - T, r.windows, r.framesInferred])).toEqual([[0, 3, 9 + 18 + 9 + 18], [HOUR, 1, 9]]);
    expect(hours[0]?.classCounts).toEqual({ cat: 14, dog: 6, empty: 34 });
    // [from, to): the bucket starting at `to` is left out.
    expect(rollups.forDevice('a', 'minute', T, T + MIN).map((r) => r.bucketStart)).toEqual([T]);
  });

  it('merges latency bins so quantiles can be read from a rollup', () => {
    const [m0] = rollups.forDevice('a', 'minute', T, T + MIN);
    expect(m0?.latency).toHaveLength(1);
    const h = m0!.latency[0]!;
    expect(h.spec).toBe('latency-ms.v2');
    // 20 observations of 5.5 ms in [5, 6), 10 of 12.5 ms in [12, 13).
    const nonZero = h.counts.flatMap((c, i) => (c > 0 ? [[i, c]] : []));
    expect(nonZero).toEqual([[binIndex('latency-ms.v2', 5.5), 20], [binIndex('latency-ms.v2', 12.5), 10]]);
    expect(h.sum).toBeCloseTo(20 * 5.5 + 10 * 12.5, 9);
    // p50: the 15th of 30 lies 15/20 into [5, 6); p95: the 28.5th lies 8.5/10 into [12, 13).
    expect(histogramQuantile(h, 0.5)).toBeCloseTo(5.75, 9);
    expect(histogramQuantile(h, 0.95)).toBeCloseTo(12.85, 9);
  });

  it('keeps latency of another spec (older agents) apart', () => {
    send('a', 4, T + MIN + 1_000, [{ id: 'old', latencySpec: 'latency-ms.v1', latencies: repeat(3.5, 4) }]);
    const [m1] = rollups.forDevice('a', 'minute', T + MIN, T + 2 * MIN);
    expect(m1?.latency.map((h) => [h.spec, h.counts.reduce((a, b) => a + b, 0)])).toEqual([
      ['latency-ms.v2', 10],
      ['latency-ms.v1', 4],
    ]);
  });

  it('counts a redelivered window once', () => {
    const before = rollups.forDevice('a', 'hour', T, T + HOUR);
    expect(send('a', 0, T, [front, back])).toMatchObject({ inserted: 0, duplicates: 1 });
    expect(rollups.forDevice('a', 'hour', T, T + HOUR)).toEqual(before);
  });
});

describe('group rollups', () => {
  beforeEach(() => {
    send('b', 0, T + 2 * MIN, [front]);
    send('c', 0, T + 3 * MIN, [back]);
    addToGroup('a', 'lobby');
    addToGroup('b', 'lobby');
  });

  it("add the members' rollups bucket by bucket, and only the members'", () => {
    const hours = rollups.forGroup('lobby', 'hour', T, T + 2 * HOUR);
    expect(hours.map((r) => [r.bucketStart - T, r.devices, r.windows])).toEqual([[0, 2, 4], [HOUR, 1, 1]]);
    expect(hours[0]).toMatchObject({ framesReceived: 40 + 20 + 10, classCounts: { cat: 14 + 6, dog: 6 + 3, empty: 34 } });
    const lat = hours[0]!.latency[0]!;
    expect(lat.counts.reduce((a, b) => a + b, 0)).toBe(40 + 10);
    expect(rollups.groupSize('lobby')).toBe(2);
  });

  it('show a device added to a group with its history', () => {
    addToGroup('c', 'lobby');
    const [h0] = rollups.forGroup('lobby', 'hour', T, T + HOUR);
    expect(h0).toMatchObject({ devices: 3, windows: 5, classCounts: { cat: 21, dog: 9, empty: 51 } });
  });

  it('treat a name shaped like SQL as a name', () => {
    expect(rollups.forGroup("lobby' OR 1=1 --", 'hour', T, T + HOUR)).toEqual([]);
    expect(rollups.groupSize("x' OR '1'='1")).toBe(0);
  });
});

describe('rollup sums kept in memory and written behind the windows', () => {
  const labels = (n: number): CameraSpec => ({ id: 'front', framesReceived: n, framesInferred: n, classCounts: { dog: n, cat: 1 }, latencies: repeat(3.5, n) });
  const minute = (r: TelemetryRollups, device: string, at: number) => r.forDevice(device, 'minute', at, at + MIN)[0];
  const windowAt = (device: string, seq: number, start: number, n: number) => ({ window: telemetryWindow(device, seq, { start, cameras: [labels(n)] }), receivedAt: start + 10_000 });
  const newWriter = () => new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), new TelemetryRollups(t.db), new DevicePresenceStore(t.db));

  it('adds in memory, reads back what a fresh instance did not write, and takes a late window for an older bucket', () => {
    const at = T + 3 * HOUR;
    send('m', 0, at, [labels(2)]);
    send('m', 1, at + 10_000, [labels(3)]);
    // A new writer (a restarted control plane) has nothing in memory: it reads the row and adds to it.
    const w2 = newWriter();
    w2.write([windowAt('m', 2, at + 20_000, 4)]);
    // The next minute, then a late window for the first one.
    w2.write([windowAt('m', 4, at + MIN, 1)]);
    w2.write([windowAt('m', 3, at + 30_000, 5)]);
    expect(minute(rollups, 'm', at)).toMatchObject({ windows: 2 });
    w2.flushState();
    const first = minute(rollups, 'm', at);
    expect(first).toMatchObject({ windows: 4, framesInferred: 2 + 3 + 4 + 5 });
    expect(first?.classCounts).toEqual({ dog: 14, cat: 4 });
    expect(first?.latency).toEqual([expect.objectContaining({ spec: 'latency-ms.v2', sum: 14 * 3.5 })]);
    expect(minute(rollups, 'm', at + MIN)).toMatchObject({ windows: 1 });
    expect(rollups.forDevice('m', 'hour', at, at + HOUR)[0]).toMatchObject({ windows: 5 });
  });

  it('a writer that stops without writing them (a crash): the next one counts those windows from the stored ones, once', () => {
    const at = T + 4 * HOUR;
    send('c', 0, at, [labels(2)]);
    writer.write([windowAt('c', 1, at + 10_000, 3), windowAt('d', 0, at, 7)]);
    writer.write([windowAt('c', 2, at + MIN, 4)]);
    expect(minute(rollups, 'c', at)).toMatchObject({ windows: 1 });
    // Its memory is gone; the windows are committed.
    newWriter();
    expect(minute(rollups, 'c', at)).toMatchObject({ windows: 2, framesInferred: 5 });
    expect(minute(rollups, 'c', at + MIN)).toMatchObject({ windows: 1, framesInferred: 4 });
    expect(minute(rollups, 'd', at)).toMatchObject({ windows: 1, framesInferred: 7 });
    expect(t.db.prepare('SELECT device_id, highest_seq FROM telemetry_sequences ORDER BY device_id').all()).toEqual([
      { device_id: 'a', highest_seq: 3 },
      { device_id: 'c', highest_seq: 2 },
      { device_id: 'd', highest_seq: 0 },
    ]);
    expect(t.db.prepare("SELECT last_seen FROM devices WHERE id = 'c'").pluck().get()).toBe(at + MIN + 10_000);
    // And once more: nothing is counted twice.
    newWriter();
    expect(rollups.forDevice('c', 'hour', at, at + HOUR)[0]).toMatchObject({ windows: 3 });
  });

  it('a batch whose transaction fails counts nothing; its retry counts once', () => {
    const at = T + 5 * HOUR;
    send('f', 0, at, [labels(2)]);
    t.db.exec(`CREATE TRIGGER refuse_g BEFORE INSERT ON telemetry_windows WHEN NEW.device_id = 'g' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    const batch = [windowAt('f', 1, at + 10_000, 3), windowAt('g', 0, at, 1)];
    expect(() => writer.write(batch)).toThrow('refused');
    t.db.exec('DROP TRIGGER refuse_g');
    writer.write(batch);
    writer.write([windowAt('f', 2, at + 20_000, 4)]);
    writer.flushState();
    expect(minute(rollups, 'f', at)).toMatchObject({ windows: 3, framesInferred: 9 });
    expect(t.db.prepare("SELECT highest_seq FROM telemetry_sequences WHERE device_id = 'f'").pluck().get()).toBe(2);
    expect(t.db.prepare('SELECT COUNT(*) FROM telemetry_gaps').pluck().get()).toBe(0);
  });
});

describe('shadow agreement in the rollups', () => {
  const shadow = (compared: number, agreed: number): ShadowWindow =>
    shadowWindowSchema.parse({
      model: { name: 'pets', version: '2', sha256: 'c'.repeat(64) },
      sampleRate: 0.25,
      framesCompared: compared,
      agreed,
      skippedBusy: 0,
      errors: 0,
      confusion: [...(agreed > 0 ? [{ champion: 'cat', challenger: 'cat', count: agreed }] : []), ...(compared > agreed ? [{ champion: 'cat', challenger: 'dog', count: compared - agreed }] : [])],
      confusionOverflow: 0,
      championInferenceMs: emptyHistogram(LATENCY_SPEC),
      challengerInferenceMs: emptyHistogram(LATENCY_SPEC),
      cameras: [{ cameraId: 'front', framesCompared: compared, agreed }],
    });
  const withShadow = (device: string, seq: number, start: number, s: ShadowWindow | null): TelemetryWindow => ({
    ...telemetryWindow(device, seq, { start }),
    ...(s ? { shadow: s } : {}),
  });

  it('adds compared and agreed frames per bucket, for devices and groups; buckets without a challenger count none', () => {
    const at = T + 7 * HOUR;
    writer.write([
      { window: withShadow('s1', 0, at, shadow(10, 9)), receivedAt: at + 10_000 },
      { window: withShadow('s2', 0, at, shadow(20, 5)), receivedAt: at + 10_000 },
    ]);
    writer.write([{ window: withShadow('s1', 1, at + 10_000, shadow(4, 4)), receivedAt: at + 20_000 }]);
    writer.write([{ window: withShadow('s1', 2, at + MIN, null), receivedAt: at + MIN + 10_000 }]);
    writer.flushState();
    expect(rollups.forDevice('s1', 'minute', at, at + 2 * MIN).map((r) => r.shadow)).toEqual([{ framesCompared: 14, agreed: 13 }, { framesCompared: 0, agreed: 0 }]);
    addToGroup('s1', 'shadowed');
    addToGroup('s2', 'shadowed');
    expect(rollups.forGroup('shadowed', 'hour', at, at + HOUR)[0]?.shadow).toEqual({ framesCompared: 34, agreed: 18 });
    // A fresh instance (a restart) reads the sums back and adds to them.
    const again = new TelemetryRollups(t.db);
    const restarted = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), again, new DevicePresenceStore(t.db));
    restarted.write([{ window: withShadow('s1', 3, at + 20_000, shadow(6, 0)), receivedAt: at + MIN + 20_000 }]);
    restarted.flushState();
    expect(again.forDevice('s1', 'minute', at, at + MIN)[0]?.shadow).toEqual({ framesCompared: 20, agreed: 13 });
  });
});
