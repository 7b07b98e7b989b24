import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TelemetryBatchWriter } from '../ingest/telemetry-batch-writer.js';
import { createLogger } from '../logger.js';
import { DevicePresenceStore } from '../store/device-presence-store.js';
import { DeviceStore } from '../store/device-store.js';
import { TelemetryRollups } from '../store/telemetry-rollups.js';
import { TelemetryStore } from '../store/telemetry-store.js';
import { tempDatabase, telemetryWindow } from '../test-support/telemetry-windows.js';
import { GapDetector } from './gap-detector.js';
import { PresenceSweeper } from './presence-sweeper.js';

const SILENT_MS = 90_000;
let t: ReturnType<typeof tempDatabase>;
let presence: DevicePresenceStore;
let devices: DeviceStore;
let writer: TelemetryBatchWriter;
const connected = new Set<string>();

const status = (id: string) => {
  const d = devices.get(id);
  return d ? `${d.status}${d.statusReason ? `/${d.statusReason}` : ''}` : 'none';
};

beforeEach(() => {
  t = tempDatabase();
  presence = new DevicePresenceStore(t.db);
  devices = new DeviceStore(t.db);
  writer = new TelemetryBatchWriter(t.db, new TelemetryStore(t.db), new GapDetector(t.db, 60_000), new TelemetryRollups(t.db), presence);
  connected.clear();
});

afterEach(() => t.close());

describe('presence sweeper', () => {
  it('marks devices silent past the timeout, spares connected ones, and a message brings them back', () => {
    const sweeper = new PresenceSweeper(presence, { silentAfterMs: SILENT_MS, intervalMs: 1000, isConnected: (id) => connected.has(id) }, createLogger('silent'));
    devices.setStatus({ deviceId: 'quiet', state: 'online', since: 0 }, 1_000);
    devices.setStatus({ deviceId: 'idle-but-connected', state: 'online', since: 0 }, 1_000);
    devices.setStatus({ deviceId: 'recent', state: 'online', since: 0 }, 50_000);
    devices.setStatus({ deviceId: 'said-goodbye', state: 'offline', reason: 'shutdown', since: 0 }, 1_000);
    connected.add('idle-but-connected');

    // Exactly at the timeout nothing is silent yet; one ms later 'quiet' is.
    expect(sweeper.sweep(1_000 + SILENT_MS)).toEqual([]);
    expect(sweeper.sweep(1_001 + SILENT_MS)).toEqual(['quiet']);
    expect(status('quiet')).toBe('offline/silent');
    expect(status('idle-but-connected')).toBe('online');
    expect(status('recent')).toBe('online');
    expect(status('said-goodbye')).toBe('offline/shutdown');
    expect(presence.counts()).toEqual({ total: 4, online: 2, offline: 2, unknown: 0, silent: 1 });

    // A telemetry window is a message: online again, last seen moves on (once written behind the window).
    writer.write([{ window: telemetryWindow('quiet', 0), receivedAt: 200_000 }]);
    writer.flushState();
    expect(status('quiet')).toBe('online');
    expect(devices.get('quiet')?.lastSeen).toBe(200_000);
    // A device that said goodbye stays offline for its own reason until it says otherwise.
    writer.write([{ window: telemetryWindow('said-goodbye', 0), receivedAt: 200_000 }]);
    writer.flushState();
    expect(status('said-goodbye')).toBe('offline/shutdown');
    expect(sweeper.stats).toEqual({ sweeps: 2, markedSilent: 1 });
  });

  it('decides on silence alone without a broker to ask', () => {
    const sweeper = new PresenceSweeper(presence, { silentAfterMs: SILENT_MS, intervalMs: 1000 }, createLogger('silent'));
    devices.setStatus({ deviceId: 'x', state: 'online', since: 0 }, 0);
    writer.write([{ window: telemetryWindow('never-said-online', 0), receivedAt: 0 }]);
    writer.flushState();
    expect(status('never-said-online')).toBe('unknown');
    expect(sweeper.sweep(SILENT_MS + 1)).toEqual(['never-said-online', 'x']);
    expect(presence.counts()).toMatchObject({ online: 0, offline: 2, silent: 2 });
  });
});
