import { statSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CapturedLog, tempDir } from '../test-support/harness.js';
import { OutboxStore, type OutboxStoreOptions } from './outbox-store.js';

/** A payload of exactly `size` bytes that says which record it is. */
function rec(n: number, size = 100): Buffer {
  const b = Buffer.alloc(size, 0x20);
  b.write(String(n));
  return b;
}
const numberOf = (payload: Buffer) => Number.parseInt(payload.toString('utf8'), 10);

describe('outbox store (real SQLite files)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let file: string;
  const open: OutboxStore[] = [];
  const log = new CapturedLog().logger;

  function openStore(over: Partial<OutboxStoreOptions> = {}): OutboxStore {
    const s = OutboxStore.open(file, { maxBytes: 64 * 1024 * 1024, dropPolicy: 'drop-oldest', ...over }, log);
    open.push(s);
    return s;
  }
  const all = (s: OutboxStore) => s.after(0, 1_000_000).map((r) => numberOf(r.payload));

  beforeEach(async () => {
    dir = await tempDir('perch-outbox-');
    file = join(dir.path, 'outbox.db');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) s.close();
    await dir.remove();
  });

  it('keeps records in acceptance order across kinds, and across a reopen', () => {
    const a = openStore();
    for (let i = 0; i < 10; i++) expect(a.add(i % 3 === 0 ? 'events' : 'telemetry', rec(i)).accepted).toBe(true);
    expect(a.pending).toBe(10);
    expect(a.pendingBytes).toBe(1000);
    expect(a.after(0, 4).map((r) => [numberOf(r.payload), r.kind])).toEqual([
      [0, 'events'],
      [1, 'telemetry'],
      [2, 'telemetry'],
      [3, 'events'],
    ]);
    a.close();
    // What a crash leaves is what the file holds: a new object sees the same records, counters included.
    const b = openStore();
    expect(all(b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([b.pending, b.pendingBytes]).toEqual([10, 1000]);
  });

  it('removes acknowledged records only, and never reuses an id', () => {
    const s = openStore();
    const ids = [0, 1, 2].map((i) => {
      const r = s.add('telemetry', rec(i));
      if (!r.accepted) throw new Error('not accepted');
      return r.id;
    });
    s.remove([ids[0] ?? -1, ids[2] ?? -1, 12345]);
    expect(all(s)).toEqual([1]);
    expect(s.pending).toBe(1);
    s.remove([ids[1] ?? -1]);
    expect(s.pending).toBe(0);
    // With the table empty, a new record still gets a higher id: a sender's cursor cannot miss it.
    const next = s.add('telemetry', rec(3));
    expect(next.accepted && next.id).toBeGreaterThan(Math.max(...ids));
  });

  it('drop-oldest: past maxBytes the oldest records go, counted, and the count survives a reopen', () => {
    const s = openStore({ maxBytes: 1000 });
    for (let i = 0; i < 10; i++) expect(s.add('telemetry', rec(i))).toMatchObject({ accepted: true, droppedOlder: 0 });
    expect(s.add('telemetry', rec(10))).toMatchObject({ accepted: true, droppedOlder: 1 });
    // 250 bytes need three 100-byte records gone.
    expect(s.add('events', rec(11, 250))).toMatchObject({ accepted: true, droppedOlder: 3 });
    expect(all(s)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect(s.pendingBytes).toBeLessThanOrEqual(1000);
    expect(s.droppedTotal).toBe(4);
    s.close();
    expect(openStore({ maxBytes: 1000 }).droppedTotal).toBe(4);
  });

  it('drop-oldest spares records in flight while others can go', () => {
    const s = openStore({ maxBytes: 500 });
    for (let i = 0; i < 5; i++) s.add('telemetry', rec(i));
    const [, second] = s.after(0, 2);
    // Records up to the second are being published: the third goes first.
    expect(s.add('telemetry', rec(5), second?.id)).toMatchObject({ accepted: true, droppedOlder: 1 });
    expect(all(s)).toEqual([0, 1, 3, 4, 5]);
  });

  it('drop-newest: past maxRecords the arriving record is refused, counted, and the old ones stay', () => {
    const s = openStore({ maxRecords: 3, dropPolicy: 'drop-newest' });
    for (let i = 0; i < 3; i++) s.add('telemetry', rec(i));
    expect(s.add('telemetry', rec(3))).toEqual({ accepted: false, reason: 'drop-newest' });
    expect(s.add('events', rec(4))).toEqual({ accepted: false, reason: 'drop-newest' });
    expect(all(s)).toEqual([0, 1, 2]);
    expect(s.droppedTotal).toBe(2);
  });

  it('maxRecords with drop-oldest keeps the newest', () => {
    const s = openStore({ maxRecords: 3 });
    for (let i = 0; i < 7; i++) s.add('telemetry', rec(i));
    expect(all(s)).toEqual([4, 5, 6]);
    expect(s.droppedTotal).toBe(4);
  });

  it('a record larger than the whole outbox is refused whatever the policy', () => {
    const s = openStore({ maxBytes: 64 * 1024 });
    s.add('telemetry', rec(0));
    expect(s.add('telemetry', rec(1, 64 * 1024 + 1))).toEqual({ accepted: false, reason: 'too-large' });
    expect(all(s)).toEqual([0]);
    expect(s.droppedTotal).toBe(1);
  });

  describe('a full disk (SQLite max_page_count: inserts fail with SQLITE_FULL as on ENOSPC)', () => {
    const pages = 24;

    it('the database really is full: a plain insert fails with SQLITE_FULL', () => {
      const s = openStore({ maxPageCount: pages });
      for (let i = 0; i < 200; i++) s.add('telemetry', rec(i, 3000));
      s.close();
      const db = new Database(file);
      try {
        db.pragma(`max_page_count = ${pages}`);
        expect(() => db.prepare('INSERT INTO records (kind, payload, size, created_at) VALUES (?, ?, ?, ?)').run('telemetry', rec(0, 3000), 3000, 0)).toThrow(
          expect.objectContaining({ code: 'SQLITE_FULL' }),
        );
      } finally {
        db.close();
      }
    });

    it('drop-oldest: every new record is accepted, the oldest go, the file stays within its pages', () => {
      const s = openStore({ maxPageCount: pages });
      const results = Array.from({ length: 200 }, (_, i) => s.add('telemetry', rec(i, 3000)));
      expect(results.every((r) => r.accepted)).toBe(true);
      const kept = all(s);
      expect(kept.length).toBeGreaterThan(5);
      // The newest, contiguous and in order: only the oldest were dropped.
      expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 200 - kept.length + i));
      expect(s.droppedTotal).toBe(200 - kept.length);
      expect(s.pending).toBe(kept.length);
      s.close();
      expect(statSync(file).size).toBeLessThanOrEqual(pages * 4096);
      // The drop count was written in the same transactions as the drops.
      expect(openStore({ maxPageCount: pages }).droppedTotal).toBe(200 - kept.length);
    });

    it('drop-newest: once full, arriving records are refused and counted; what was accepted stays', () => {
      const s = openStore({ maxPageCount: pages, dropPolicy: 'drop-newest' });
      const results = Array.from({ length: 100 }, (_, i) => s.add('telemetry', rec(i, 3000)));
      const accepted = results.filter((r) => r.accepted).length;
      expect(accepted).toBeGreaterThan(5);
      expect(accepted).toBeLessThan(100);
      expect(results.slice(accepted).every((r) => !r.accepted && r.reason === 'storage-full' && /full/.test(r.error ?? ''))).toBe(true);
      expect(all(s)).toEqual(Array.from({ length: accepted }, (_, i) => i));
      expect(s.droppedTotal).toBe(100 - accepted);
      // Space comes back when acknowledged records are deleted.
      s.remove(s.after(0, 3).map((r) => r.id));
      expect(s.add('telemetry', rec(100, 3000)).accepted).toBe(true);
    });
  });

  it('an unreadable file is moved aside and a fresh outbox starts', () => {
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    const captured = new CapturedLog();
    const s = OutboxStore.open(file, { maxBytes: 1024 * 1024, dropPolicy: 'drop-oldest' }, captured.logger);
    open.push(s);
    expect(s.add('telemetry', rec(0)).accepted).toBe(true);
    expect(readdirSync(dir.path).some((f) => /^outbox\.db\.corrupt-\d+$/.test(f))).toBe(true);
    expect(captured.find((l) => l.msg === 'outbox database unreadable; moved aside, starting an empty one')).toBeDefined();
  });
});
