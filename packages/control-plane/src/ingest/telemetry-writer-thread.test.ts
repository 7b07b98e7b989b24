import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { TelemetryIngest } from './telemetry-ingest.js';
import { TelemetryWriterThread } from './telemetry-writer-thread.js';

const execFileAsync = promisify(execFile);
let t: ReturnType<typeof tempDatabase>;
let thread: TelemetryWriterThread;
const stored = () => t.db.prepare('SELECT device_id || \':\' || seq FROM telemetry_windows ORDER BY rowid').pluck().all() as string[];

beforeEach(() => {
  t = tempDatabase();
  thread = new TelemetryWriterThread({ databaseFile: t.file, gapGraceMs: 60_000 }, createLogger('silent'));
});

afterEach(async () => {
  await thread.close();
  t.close();
});

describe('telemetry writer thread', () => {
  it('commits batches on its own connection: windows, gaps, rollups and last seen, read back from this one', async () => {
    const w = (seq: number) => telemetryWindow('d1', seq, { start: 120_000 + seq * 10_000, cameras: [{ classCounts: { cat: seq + 1 }, latencies: [5] }] });
    const first = await thread.write([w(0), w(1)].map((window) => ({ window, receivedAt: 500_000 })));
    expect(first).toEqual({ inserted: 2, duplicates: 0, late: 0, missingOpened: 0, devices: 1 });
    // seq 2 missing; seq 1 again is a duplicate.
    const second = await thread.write([w(3), w(1)].map((window) => ({ window, receivedAt: 510_000 })));
    expect(second).toEqual({ inserted: 1, duplicates: 1, late: 0, missingOpened: 1, devices: 1 });
    expect(stored()).toEqual(['d1:0', 'd1:1', 'd1:3']);
    // The JSON stored is the window as decoded here.
    const json = t.db.prepare('SELECT payload_json FROM telemetry_windows WHERE seq = 3').pluck().get() as string;
    expect(JSON.parse(json)).toEqual(w(3));
    expect(t.db.prepare('SELECT first_seq, last_seq FROM telemetry_gaps WHERE device_id = ?').all('d1')).toEqual([{ first_seq: 2, last_seq: 2 }]);
    const minute = new TelemetryRollups(t.db).forDevice('d1', 'minute', 0, 1e9);
    expect(minute.map((r) => [r.bucketStart, r.windows, r.classCounts])).toEqual([
      [120_000, 3, { cat: 1 + 2 + 4 }],
    ]);
    expect(t.db.prepare('SELECT last_seen FROM devices WHERE id = ?').pluck().get('d1')).toBe(510_000);
  });

  it('fails a batch the database refuses, with its reason, keeping nothing of it; the next batch writes', async () => {
    // A trigger makes one device's windows fail inside the thread's transaction, after others of the batch were written.
    t.db.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON telemetry_windows WHEN NEW.device_id = 'poison'
               BEGIN SELECT RAISE(ABORT, 'poison refused'); END`);
    const batch = [telemetryWindow('a', 0), telemetryWindow('poison', 0)].map((window) => ({ window, receivedAt: 1 }));
    await expect(thread.write(batch)).rejects.toThrow(/poison refused/);
    expect(stored()).toEqual([]);
    expect(t.db.prepare('SELECT COUNT(*) FROM telemetry_sequences').pluck().get()).toBe(0);

    t.db.exec('DROP TRIGGER refuse_poison');
    // The thread forgot what the failed transaction had cached: the same windows are new again.
    expect(await thread.write(batch)).toMatchObject({ inserted: 2, duplicates: 0, missingOpened: 0 });
    expect(stored()).toEqual(['a:0', 'poison:0']);
    expect(new TelemetryRollups(t.db).forDevice('a', 'minute', 0, 1e9).map((r) => r.windows)).toEqual([1]);
  });

  it('a thread that dies fails what it had not answered; the next batch starts a new one, and the retried windows are stored once', async () => {
    const batch = (seqs: number[]) => seqs.map((seq) => ({ window: telemetryWindow('d', seq), receivedAt: seq }));
    await thread.write(batch([0, 1]));
    // In flight when the thread ends: 3,000 windows take far longer to write (~0.3 s) than terminate takes to land.
    const big = batch(Array.from({ length: 3000 }, (_, i) => i + 2));
    const inFlight = thread.write(big);
    await thread.terminate();
    await expect(inFlight).rejects.toThrow(/exited/);
    // Retried on a new thread: whatever the old one committed before it died is a duplicate now.
    const again = await thread.write(big);
    expect(again.inserted + again.duplicates).toBe(3000);
    expect(stored()).toHaveLength(3002);
    expect(t.db.prepare('SELECT COUNT(*) FROM telemetry_gaps').pluck().get()).toBe(0);
  });

  it('behind the ingest: two batches in flight that both fail go back in arrival order, so the retry opens no gap', async () => {
    t.db.exec(`CREATE TRIGGER refuse_all BEFORE INSERT ON telemetry_windows BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    const ingest = new TelemetryIngest(thread, createLogger('silent'), { maxBatch: 5, flushMs: 3_600_000, maxPending: 1000 });
    // The fifth window sends a batch, the tenth a second one while the first is in flight.
    for (let seq = 0; seq < 10; seq++) ingest.enqueue(telemetryWindow('d', seq), seq);
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
      ingest.enqueue(telemetryWindow(device, s), seq, () => committedWhenDone.push(isStored.get(device, s) === 1));
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
      import { telemetryWindow } from '${here}../test-support/telemetry-windows.ts';
      import { TelemetryWriterThread } from '${here}telemetry-writer-thread.ts';
      const thread = new TelemetryWriterThread({ databaseFile: ${JSON.stringify(t.file)}, gapGraceMs: 60000 }, createLogger('silent'));
      await thread.write([{ window: telemetryWindow('solo', 0), receivedAt: 1 }]);
      await thread.close();
      console.log('after close');
    `;
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: here });
    expect(stdout.trim()).toBe('after close');
    expect(stored()).toEqual(['solo:0']);
  });
});
