import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { detectionEventSchema, type DetectionEvent } from '@perch/shared';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FrameResult } from '../inference/frame-scheduler.js';
import { SequenceStore } from '../telemetry/sequence-store.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { DetectionEvents } from './detection-events.js';
import { eventsConfigSchema, type EventsConfig } from './events-config.js';
import { SnapshotStore } from './snapshot-store.js';

function result(label: string, confidence: number, arrivedAt: number, cameraId = 'front'): FrameResult {
  const frame = new Uint8Array(8 * 8 * 3).fill(label === 'red' ? 200 : 40);
  return { cameraId, label, labelIndex: 0, confidence, probabilities: new Float32Array([confidence]), frame, width: 8, height: 8, arrivedAt, finishedAt: arrivedAt + 3 };
}

describe('detection events', () => {
  let dir: { path: string; remove(): Promise<void> };
  let source: EventEmitter<{ result: [FrameResult] }>;
  let sent: DetectionEvent[];
  let captured: CapturedLog;
  let events: DetectionEvents;
  let config: EventsConfig;
  let handedOver: { camera: string; ageMs: number }[];

  beforeEach(async () => {
    dir = await tempDir();
    source = new EventEmitter();
    sent = [];
    handedOver = [];
    captured = new CapturedLog();
    const parsed = eventsConfigSchema.parse({ debounceFrames: 2, disappearMs: 60_000, updateIntervalMs: 1000, ignoreLabels: ['empty'] });
    config = { ...parsed, snapshots: { ...parsed.snapshots, dir: join(dir.path, 'snapshots') } };
    events = new DetectionEvents(
      { deviceId: 'gate-1', config, onHandedOver: (camera, ageMs) => handedOver.push({ camera, ageMs }) },
      source,
      new SequenceStore(dir.path, 'events-seq.json'),
      { publish: (e) => void sent.push(e) },
      new SnapshotStore(config.snapshots, captured.logger),
      captured.logger,
    );
    await events.start();
  });

  afterEach(async () => {
    await events.stop();
    await dir.remove();
  });

  it('numbers events in their own persisted sequence, with a JPEG snapshot per new and update', async () => {
    const t0 = performance.now();
    source.emit('result', result('red', 0.9, t0));
    source.emit('result', result('empty', 0.99, t0 + 100)); // breaks the run: no event
    source.emit('result', result('red', 0.9, t0 + 200));
    source.emit('result', result('red', 0.95, t0 + 300));
    source.emit('result', result('red', 0.7, t0 + 1400));
    await events.idle();
    expect(sent.map((e) => [e.seq, e.kind, e.label])).toEqual([
      [0, 'new', 'red'],
      [1, 'update', 'red'],
    ]);
    for (const e of sent) expect(detectionEventSchema.safeParse(e).success).toBe(true);
    const [created, updated] = sent;
    expect(created?.eventId).toBe(updated?.eventId);
    expect(updated?.topConfidence).toBeCloseTo(0.95, 5);
    // Wall-clock times from the frames' monotonic arrival times.
    expect(Math.abs((created?.startedAt ?? 0) - Date.now())).toBeLessThan(60_000);
    expect((updated?.at ?? 0) - (created?.startedAt ?? 0)).toBeGreaterThanOrEqual(1199);
    expect(created?.snapshot).toBe('front-0-new.jpg');
    expect(updated?.snapshot).toBe('front-1-update.jpg');
    const meta = await sharp(join(config.snapshots.dir, 'front-0-new.jpg')).metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 8, height: 8 });
    expect(JSON.parse(await readFile(join(dir.path, 'events-seq.json'), 'utf8'))).toEqual({ next: 2 });
    expect(existsSync(join(dir.path, 'telemetry-seq.json'))).toBe(false);

    // Stopping ends what is open; the end names the event's last snapshot.
    await events.stop();
    expect(sent.at(-1)).toMatchObject({ seq: 2, kind: 'end', eventId: created?.eventId, snapshot: 'front-1-update.jpg' });
  });

  it('a sink that fails loses that event only: later ones still go, and the failure is logged', async () => {
    let fail = true;
    const flaky = new DetectionEvents(
      { deviceId: 'gate-1', config: { ...config, snapshots: { ...config.snapshots, enabled: false } } },
      source,
      new SequenceStore(dir.path, 'other-seq.json'),
      {
        publish: (e) => {
          if (fail) throw new Error('outbox closed');
          sent.push(e);
        },
      },
      null,
      captured.logger,
    );
    await flaky.start();
    await events.stop();
    sent.length = 0;
    const t0 = performance.now();
    source.emit('result', result('red', 0.9, t0, 'back'));
    source.emit('result', result('red', 0.9, t0 + 100, 'back'));
    await flaky.idle();
    await waitFor('the failure logged', () => captured.find((l) => l.msg === 'detection event not published'));
    fail = false;
    await flaky.stop();
    expect(sent.map((e) => [e.seq, e.kind, e.cameraId, e.snapshot])).toEqual([[1, 'end', 'back', undefined]]);
  });

  it('reports how old the frame behind each new/update event was when it was handed over', async () => {
    const arrived = performance.now() - 250;
    source.emit('result', result('red', 0.9, arrived));
    source.emit('result', result('red', 0.9, arrived));
    await events.idle();
    await waitFor('the new event handed over', () => handedOver.length >= 1);
    expect(sent.map((e) => e.kind)).toEqual(['new']);
    expect(handedOver[0]?.camera).toBe('front');
    // The frame arrived 250 ms before it was offered, so it is at least that old at hand-over.
    expect(handedOver[0]?.ageMs).toBeGreaterThanOrEqual(250);
  });
});
