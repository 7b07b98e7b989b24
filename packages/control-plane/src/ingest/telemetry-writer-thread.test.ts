import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { encodeJson } from '@perch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { received, tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { TelemetryIngest } from './telemetry-ingest.js';
import { TelemetryWriterThread } from './telemetry-writer-thread.js';

const execFileAsync = promisify(execFile);
/** Rollups, sequences and last seen written only when asked (or at close): what a test reads is what it flushed. */
const STATE = { flushMs: 3_600_000, chunkRows: 3 };
let t: ReturnType<typeof tempDatabase>;
let thread: TelemetryWriterThread;
const stored = () => t.db.prepare('SELECT device_id || \':\' || seq FROM telemetry_windows ORDER BY rowid').pluck().all() as string[];

beforeEach(() => {
  t = tempDatabase();
  thread = new TelemetryWriterThread({ databaseFile: t.file, gapGraceMs: 60_000, state: STATE }, createLogger('silent'));
});

afterEach(async () => {
  await thread.close();
  t.close();
});

describe('telemetry writer thread', () => {
  it('commits batches on its own connection: windows, gaps, rollups and last seen, read back from this one', async () => {
    const w = (seq: number) => telemetryWindow('d1', seq, { start: 120_000 + seq * 10_000, cameras: [{ classCounts: { cat: seq + 1 }, latencies: [5] }] });
    const first = await thread.writeReceived([w(0), w(1)].map((window) => received(window, 500_000)));
    expect(first).toEqual({ inserted: 2, duplicates: 0, late: 0, missingOpened: 0, devices: 1, rejected: [] });
    // seq 2 missing; seq 1 again is a duplicate.
    const second = await thread.writeReceived([w(3), w(1)].map((window) => received(window, 510_000)));
    expect(second).toEqual({ inserted: 1, duplicates: 1, late: 0, missingOpened: 1, devices: 1, rejected: [] });
    expect(stored()).toEqual(['d1:0', 'd1:1', 'd1:3']);
    // The JSON stored is the window as decoded here.
    const json = t.db.prepare('SELECT payload_json FROM telemetry_windows WHERE seq = 3').pluck().get() as string;
    expect(JSON.parse(json)).toEqual(w(3));
    expect(t.db.prepare('SELECT first_seq, last_seq FROM telemetry_gaps WHERE device_id = ?').all('d1')).toEqual([{ first_seq: 2, last_seq: 2 }]);
    // Rollups and last seen are written behind the windows.
    const rollups = new TelemetryRollups(t.db);
    expect(rollups.forDevice('d1', 'minute', 0, 1e9)).toEqual([]);
    await thread.flushState();
    const minute = rollups.forDevice('d1', 'minute', 0, 1e9);
    expect(minute.map((r) => [r.bucketStart, r.windows, r.classCounts])).toEqual([
      [120_000, 3, { cat: 1 + 2 + 4 }],
    ]);
    expect(t.db.prepare('SELECT last_seen FROM devices WHERE id = ?').pluck().get('d1')).toBe(510_000);
  });

  it('decodes what it is sent, views into larger reads included: what does not decode comes back rejected with its reason, the rest is written', async () => {
    // As a socket read holds several publishes: payloads that are views into one larger buffer.
    const a = encodeJson(telemetryWindow('a', 0));
    const b = encodeJson(telemetryWindow('b', 0));
    const read = Buffer.concat([Buffer.from('header'), a, b, Buffer.from('trailer')]);
    const batch = [
      { deviceId: 'a', payload: read.subarray(6, 6 + a.length), receivedAt: 1 },
      { deviceId: 'a', payload: Buffer.from('not json'), receivedAt: 2 },
      { deviceId: 'b', payload: read.subarray(6 + a.length, 6 + a.length + b.length), receivedAt: 3 },
      { deviceId: 'c', payload: encodeJson(telemetryWindow('b', 1)), receivedAt: 4 },
    ];
    const result = await thread.writeReceived(batch);
    expect(result).toMatchObject({ inserted: 2, devices: 2 });
    expect(result.rejected).toEqual([
      { index: 1, reason: expect.stringMatching(/^malformed JSON/) },
      { index: 3, reason: "payload deviceId b does not match the topic's device c" },
    ]);
    expect(stored()).toEqual(['a:0', 'b:0']);
    // The caller's buffers are its own still (the thread got a copy).
    expect(read.subarray(6, 6 + a.length)).toEqual(a);
  });

  it('fails a batch the database refuses, with its reason, keeping nothing of it; the next batch writes', async () => {
    // A trigger makes one device's windows fail inside the thread's transaction, after others of the batch were written.
    t.db.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON telemetry_windows WHEN NEW.device_id = 'poison'
               BEGIN SELECT RAISE(ABORT, 'poison refused'); END`);
    const batch = [telemetryWindow('a', 0), telemetryWindow('poison', 0)].map((window) => received(window, 1));
    await expect(thread.writeReceived(batch)).rejects.toThrow(/poison refused/);
    expect(stored()).toEqual([]);
    expect(t.db.prepare('SELECT COUNT(*) FROM telemetry_sequences').pluck().get()).toBe(0);

    t.db.exec('DROP TRIGGER refuse_poison');
    // The thread forgot what the failed transaction had cached: the same windows are new again.
    expect(await thread.writeReceived(batch)).toMatchObject({ inserted: 2, duplicates: 0, missingOpened: 0 });
    expect(stored()).toEqual(['a:0', 'poison:0']);
    await thread.flushState();
    expect(new TelemetryRollups(t.db).forDevice('a', 'minute', 0, 1e9).map((r) => r.windows)).toEqual([1]);
  });

  it('a thread that dies fails what it had not answered; the next batch starts a new one, and the retried windows are stored once', async () => {
    const batch = (seqs: number[]) => seqs.map((seq) => received(telemetryWindow('d', seq), seq));
    await thread.writeReceived(batch([0, 1]));
    // In flight when the thread ends: 3,000 windows take far longer to write (~0.3 s) than terminate takes to land.
    const big = batch(Array.from({ length: 3000 }, (_, i) => i + 2));
    const inFlight = thread.writeReceived(big);
    await thread.terminate();
    await expect(inFlight).rejects.toThrow(/exited/);
    // Retried on a new thread: whatever the old one committed before it died is a duplicate now.
    const again = await thread.writeReceived(big);
    expect(again.inserted + again.duplicates).toBe(3000);
    expect(stored()).toHaveLength(3002);
    expect(t.db.prepare('SELECT COUNT(*) FROM telemetry_gaps').pluck().get()).toBe(0);
    await thread.flushState();
    // Whatever the dead thread had counted and not written, the new one counted again from the windows: each once.
    const windows = new TelemetryRollups(t.db).forDevice('d', 'hour', 0, 1e12).reduce((n, r) => n + r.windows, 0);
    expect(windows).toBe(3002);
    expect(t.db.prepare('SELECT highest_seq FROM telemetry_sequences WHERE device_id = ?').pluck().get('d')).toBe(3001);
  });

  it('a thread that dies between writes of the rollups: the next one counts the windows after the last complete write, each once', async () => {
    const w = (seq: number) => received(telemetryWindow(`dev-${seq % 4}`, Math.floor(seq / 4), { start: 60_000 * Math.floor(seq / 8) }), 1000 + seq);
    await thread.writeReceived(Array.from({ length: 40 }, (_, i) => w(i)));
    await thread.flushState();
    const watermark = () => t.db.prepare('SELECT through_rowid FROM telemetry_state_watermark').pluck().get() as number;
    const written = watermark();
    await thread.writeReceived(Array.from({ length: 40 }, (_, i) => w(40 + i)));
    // As if the thread had died after writing some chunks of its next write and before the last one:
    // rows written (they name the newest window they count), the watermark still behind.
    await thread.flushState();
    t.db.prepare('UPDATE telemetry_state_watermark SET through_rowid = ?').run(written);
    await thread.terminate();
    // The next thread says so in the control plane's log, from its own thread.
    const lines: Record<string, unknown>[] = [];
    const logged = createLogger('info', 'test', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    thread = new TelemetryWriterThread({ databaseFile: t.file, gapGraceMs: 60_000, state: STATE }, logged);
    await thread.writeReceived([received(telemetryWindow('dev-0', 20), 5000)]);
    expect(lines).toContainEqual(expect.objectContaining({ windows: 40, after: written, msg: expect.stringMatching(/counted again/) }));
    await thread.flushState();
    const rollups = new TelemetryRollups(t.db);
    const total = (res: 'minute' | 'hour') =>
      [0, 1, 2, 3].reduce((n, d) => n + rollups.forDevice(`dev-${d}`, res, 0, 1e12).reduce((m, r) => m + r.windows, 0), 0);
    expect(total('minute')).toBe(81);
    expect(total('hour')).toBe(81);
    expect(watermark()).toBeGreaterThan(written);
    expect(t.db.prepare('SELECT device_id, highest_seq FROM telemetry_sequences ORDER BY device_id').all()).toEqual([
      { device_id: 'dev-0', highest_seq: 20 },
      { device_id: 'dev-1', highest_seq: 19 },
      { device_id: 'dev-2', highest_seq: 19 },
      { device_id: 'dev-3', highest_seq: 19 },
    ]);
  });

  it('a write of the rollups the database refuses fails with its reason, and the next one writes them all', async () => {
    await thread.writeReceived([0, 1, 2].map((seq) => received(telemetryWindow('r', seq, { start: 60_000 }), 1000 + seq)));
    t.db.exec(`CREATE TRIGGER refuse_rollup BEFORE INSERT ON telemetry_rollups_hour BEGIN SELECT RAISE(ABORT, 'rollups refused'); END`);
    await expect(thread.flushState()).rejects.toThrow(/rollups refused/);
    t.db.exec('DROP TRIGGER refuse_rollup');
    await thread.flushState();
    expect(new TelemetryRollups(t.db).forDevice('r', 'hour', 0, 1e9).map((r) => r.windows)).toEqual([3]);
    expect(t.db.prepare("SELECT highest_seq FROM telemetry_sequences WHERE device_id = 'r'").pluck().get()).toBe(2);
  });

  it('behind the ingest: two batches in flight that both fail go back in arrival order, so the retry opens no gap', async () => {
    t.db.exec(`CREATE TRIGGER refuse_all BEFORE INSERT ON telemetry_windows BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    const ingest = new TelemetryIngest(thread, createLogger('silent'), { maxBatch: 5, flushMs: 3_600_000, maxPending: 1000 });
    // The fifth window sends a batch, the tenth a second one while the first is in flight.
    for (let seq = 0; seq < 10; seq++) ingest.enqueue(received(telemetryWindow('d', seq), seq));
    expect(await ingest.flush()).toBe(false);
    expect(ingest.stats.failedBatches).toBe(2);
    expect(ingest.queued).toBe(10);

    t.db.exec('DROP TRIGGER refuse_all');
    expect(await ingest.flush()).toBe(true);
    expect(stored()).toEqual(Array.from({ length: 10 }, (_, seq) => `d:${seq}`));
    expect(ingest.stats).toMatchObject({ inserted: 10, late: 0, missingOpened: 0 });
    await ingest.stop();
  });

  it('behind the ingest: a window is committed when its done callback runs, and stop writes the rest and ends the thread', async () => {
    const ingest = new TelemetryIngest(thread, createLogger('silent'), { maxBatch: 50, flushMs: 5, maxPending: 10_000 });
    const committedWhenDone: boolean[] = [];
    const isStored = t.db.prepare('SELECT COUNT(*) FROM telemetry_windows WHERE device_id = ? AND seq = ?').pluck();
    for (let seq = 0; seq < 300; seq++) {
      const device = `dev-${seq % 7}`;
      const s = Math.floor(seq / 7);
      ingest.enqueue(received(telemetryWindow(device, s), seq), () => committedWhenDone.push(isStored.get(device, s) === 1));
      if (seq % 40 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await ingest.stop();
    expect(committedWhenDone).toHaveLength(300);
    expect(committedWhenDone.every(Boolean)).toBe(true);
    expect(stored()).toHaveLength(300);
    expect(ingest.stats).toMatchObject({ received: 300, inserted: 300, failedBatches: 0, lost: 0 });
    expect(ingest.stats.batches).toBeGreaterThan(1);
  });
});

describe('telemetry writer thread in a process with nothing else to do', () => {
  it('keeps the process up until it has closed, so what follows the close runs', async () => {
    const here = new URL('.', import.meta.url).pathname;
    const script = `
      import { createLogger } from '${here}../logger.ts';
      import { received, telemetryWindow } from '${here}../test-support/telemetry-windows.ts';
      import { TelemetryWriterThread } from '${here}telemetry-writer-thread.ts';
      const thread = new TelemetryWriterThread({ databaseFile: ${JSON.stringify(t.file)}, gapGraceMs: 60000, state: { flushMs: 5000, chunkRows: 2000 } }, createLogger('silent'));
      await thread.writeReceived([received(telemetryWindow('solo', 0), 1)]);
      await thread.close();
      console.log('after close');
    `;
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: here });
    expect(stdout.trim()).toBe('after close');
    expect(stored()).toEqual(['solo:0']);
  });
});
