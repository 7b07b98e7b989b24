import { parentPort, workerData } from 'node:worker_threads';
import type { TelemetryWindow } from '@perch/shared';
import { connectDatabase } from '../store/database.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { TelemetryBatchWriter, type PendingWindow } from './telemetry-batch-writer.js';
import type { FromWriter, ToWriter, WriterInit } from './telemetry-writer-thread.js';

const CHECKPOINT_INTERVAL_MS = 1000;

// The telemetry writer thread (see TelemetryWriterThread). Its windows were decoded and checked
// against the contract on the main thread; the JSON it gets is that checked value.
const port = parentPort;
if (!port) throw new Error('the telemetry writer runs as a worker thread');
const init = workerData as WriterInit;
const db = connectDatabase(init.databaseFile);
// The main thread's connection does not checkpoint while this thread runs (a checkpoint copies pages
// and syncs: I/O the event loop would wait on); this one does, after its commits and on a timer for
// the main thread's own writes.
const checkpoints = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), CHECKPOINT_INTERVAL_MS);
const writer = new TelemetryBatchWriter(db, new TelemetryStore(db), new GapDetector(db, init.gapGraceMs), new TelemetryRollups(db), new DevicePresenceStore(db));

port.on('message', (msg: ToWriter) => {
  if (msg.type === 'close') {
    clearInterval(checkpoints);
    db.close();
    port.close();
    return;
  }
  let reply: FromWriter;
  try {
    const batch: PendingWindow[] = msg.windows.map((json, i) => ({ window: JSON.parse(json) as TelemetryWindow, receivedAt: msg.receivedAt[i] ?? Date.now(), json }));
    reply = { type: 'written', id: msg.id, result: writer.write(batch) };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    reply = { type: 'failed', id: msg.id, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  port.postMessage(reply);
});
