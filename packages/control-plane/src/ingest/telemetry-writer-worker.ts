import { parentPort, workerData } from 'node:worker_threads';
import { connectDatabase } from '../store/database.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { GapDetector } from '../telemetry/gap-detector.js';
import { unpackWindows } from './packed-windows.js';
import { TelemetryBatchWriter } from './telemetry-batch-writer.js';
import type { FromWriter, ToWriter, WriterInit } from './telemetry-writer-thread.js';

const CHECKPOINT_INTERVAL_MS = 1000;
/**
 * 32 MiB of WAL between automatic checkpoints (SQLite's default is 1,000 pages, 4 MiB). A checkpoint
 * copies the newest version of each page in the WAL once, so a longer WAL copies fewer pages per
 * window: at 10,000 devices each write dirties pages all over the per-device indexes and tables, and
 * with 4 MiB the writer checkpointed several times a second (fleet-scale: p99 publish-to-commit
 * 1.3-1.9 s at 5,000 windows/s before, 250-400 ms after, when rollups were still written per batch).
 */
const WAL_AUTOCHECKPOINT_PAGES = 8000;

// The telemetry writer thread (see TelemetryWriterThread). It gets windows as the broker received
// them and decodes them itself: those that do not decode come back rejected, for the dispatcher to drop.
const port = parentPort;
if (!port) throw new Error('the telemetry writer runs as a worker thread');
const init = workerData as WriterInit;
const db = connectDatabase(init.databaseFile);
// The main thread's connection does not checkpoint while this thread runs (a checkpoint copies pages
// and syncs: I/O the event loop would wait on); this one does, after its commits and on a timer for
// the main thread's own writes.
db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
const checkpoints = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // An I/O error now is the next commit's error too, where it is reported; the next tick tries again.
  }
}, CHECKPOINT_INTERVAL_MS);
// What the state written behind the windows has to say goes to the control plane's log, on the main thread.
const say =
  (level: 'error' | 'info') =>
  (fields: Record<string, unknown>, msg: string): void => {
    const err = fields['err'];
    const plain = err instanceof Error ? { ...fields, err: { message: err.message, code: (err as { code?: unknown }).code } } : fields;
    port.postMessage({ type: 'log', level, msg, fields: plain } satisfies FromWriter);
  };
// Counts again, before the first batch, the windows a crash left out of the rollups, sequences and last seen.
const writer = new TelemetryBatchWriter(db, new TelemetryStore(db), new GapDetector(db, init.gapGraceMs), new TelemetryRollups(db), new DevicePresenceStore(db), init.state, {
  error: say('error'),
  info: say('info'),
});

port.on('message', (msg: ToWriter) => {
  if (msg.type === 'close') {
    // What the database refuses now is counted again at the next start, from the watermark.
    void writer.close();
    clearInterval(checkpoints);
    db.close();
    port.close();
    return;
  }
  let reply: FromWriter;
  try {
    if (msg.type === 'flush-state') {
      writer.flushState();
      reply = { type: 'flushed', id: msg.id };
    } else {
      reply = { type: 'written', id: msg.id, result: writer.writeReceived(unpackWindows(msg.windows)) };
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    reply = { type: 'failed', id: msg.id, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  port.postMessage(reply);
});
