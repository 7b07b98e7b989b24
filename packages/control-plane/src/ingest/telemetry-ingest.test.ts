import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { encodeJson } from '@perch/shared';
import { received, tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { TelemetryBatchWriter } from './telemetry-batch-writer.js';
import { MessageMalformed, MessageNotKept } from '../bus/device-message-dispatcher.js';
import { TelemetryIngest } from './telemetry-ingest.js';

let t: ReturnType<typeof tempDatabase>;
let ingest: TelemetryIngest;
const stored = () => t.db.prepare('SELECT COUNT(*) FROM telemetry_windows').pluck().get() as number;

function ingestWith(opts: { maxBatch: number; maxPending: number }): TelemetryIngest {
  const writer = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), new TelemetryRollups(t.db), new DevicePresenceStore(t.db));
  // flushMs far away: only maxBatch and explicit flushes write.
  return new TelemetryIngest(writer, createLogger('silent'), { ...opts, flushMs: 3_600_000 });
}

beforeEach(() => {
  t = tempDatabase();
});

afterEach(async () => {
  await ingest.stop();
  t.close();
});

describe('telemetry ingest', () => {
  it('writes a batch when maxBatch windows wait, at most maxBatch at a time, and tells listeners what each batch was', async () => {
    ingest = ingestWith({ maxBatch: 4, maxPending: 100 });
    const batches: [number, number][] = [];
    ingest.onBatch((batch, result) => batches.push([batch.length, result.inserted]));
    for (let seq = 0; seq < 3; seq++) ingest.enqueue(received(telemetryWindow('d', seq), 1_000 + seq));
    // Under maxBatch, and the timer is an hour away: nothing written.
    await new Promise((r) => setTimeout(r, 20));
    expect(stored()).toBe(0);
    // The fourth window sends a batch, the eighth another while the first is in flight (two may be);
    // the last two wait for one to be answered. Seqs 0-2 come again: duplicates.
    for (let seq = 3; seq < 10; seq++) ingest.enqueue(received(telemetryWindow('d', seq % 7), 1_000 + seq));
    expect(ingest.queued).toBe(2);
    expect(await ingest.flush()).toBe(true);
    expect(stored()).toBe(7);
    expect(ingest.queued).toBe(0);
    expect(batches).toEqual([[4, 4], [4, 3], [2, 0]]);
    expect(ingest.stats).toMatchObject({ received: 10, inserted: 7, duplicates: 3, batches: 3, failedBatches: 0, lost: 0, lastBatchAt: expect.any(Number) });
  });

  it('keeps the windows of a failed write for the next try, and drops (counting) only beyond maxPending', async () => {
    ingest = ingestWith({ maxBatch: 1000, maxPending: 5 });
    for (let seq = 0; seq < 4; seq++) ingest.enqueue(received(telemetryWindow('d', seq)));
    // A database that refuses writes, for real.
    t.db.pragma('query_only = ON');
    expect(await ingest.flush()).toBe(false);
    expect(ingest.queued).toBe(4);
    for (let seq = 4; seq < 7; seq++) ingest.enqueue(received(telemetryWindow('d', seq)));
    expect(await ingest.flush()).toBe(false);
    // 7 accepted, room for 5: the two oldest are gone, and counted.
    expect(ingest.queued).toBe(5);
    expect(ingest.stats).toMatchObject({ failedBatches: 2, lost: 2 });

    t.db.pragma('query_only = OFF');
    expect(await ingest.flush()).toBe(true);
    expect(t.db.prepare('SELECT seq FROM telemetry_windows ORDER BY seq').pluck().all()).toEqual([2, 3, 4, 5, 6]);
    expect(ingest.stats).toMatchObject({ inserted: 5, lost: 2 });
  });

  it('settles an unacknowledged window at its commit, and refuses (not loses) one it gives up; an acknowledged one given up is lost', async () => {
    ingest = ingestWith({ maxBatch: 1000, maxPending: 1000 });
    const handle = ingest.handler().handle;
    const committed = handle('d', encodeJson(telemetryWindow('d', 0)), false);
    let settled = false;
    void committed.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    expect(await ingest.flush()).toBe(true);
    await committed;
    expect(stored()).toBe(1);

    // The database refuses writes; the control plane stops.
    t.db.pragma('query_only = ON');
    const refused = handle('d', encodeJson(telemetryWindow('d', 1)), false);
    const lost = handle('d', encodeJson(telemetryWindow('d', 2)), true);
    await ingest.stop();
    await expect(refused).rejects.toBeInstanceOf(MessageNotKept);
    // Acknowledged already: nobody waits to send it again; settled, and counted lost.
    await expect(lost).resolves.toBeUndefined();
    expect(ingest.stats).toMatchObject({ notKept: 1, lost: 1 });
    t.db.pragma('query_only = OFF');
  });

  it('decodes windows in the writer: one that does not decode is refused as malformed, with its reason, and the rest of its batch commits', async () => {
    ingest = ingestWith({ maxBatch: 1000, maxPending: 1000 });
    const told: number[][] = [];
    ingest.onBatch((batch) => told.push(batch.map((w) => w.receivedAt)));
    const handle = ingest.handler().handle;
    const good = handle('d', encodeJson(telemetryWindow('d', 0)), false);
    const notJson = handle('d', Buffer.from('{"deviceId":'), false);
    const notContract = handle('d', encodeJson({ ...telemetryWindow('d', 1), seq: -1 }), false);
    const otherDevice = handle('d', encodeJson(telemetryWindow('e', 2)), false);
    const alsoGood = handle('d', encodeJson(telemetryWindow('d', 3)), false);
    expect(await ingest.flush()).toBe(true);
    await expect(good).resolves.toBeUndefined();
    await expect(alsoGood).resolves.toBeUndefined();
    await expect(notJson).rejects.toThrow(MessageMalformed);
    await expect(notJson).rejects.toThrow(/malformed JSON/);
    await expect(notContract).rejects.toThrow(/seq/);
    await expect(otherDevice).rejects.toThrow(/payload deviceId e does not match the topic's device d/);
    expect(t.db.prepare('SELECT seq FROM telemetry_windows ORDER BY seq').pluck().all()).toEqual([0, 3]);
    expect(ingest.stats).toMatchObject({ received: 5, inserted: 2, malformed: 3, batches: 1 });
    // Listeners (metrics: ingest lag, batch size) hear of the two windows written, not of those dropped.
    expect(told.map((b) => b.length)).toEqual([2]);
  });
});
