import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { deviceTopic, encodeJson, type DetectionEvent, type TelemetryWindow } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttConnection } from '../mqtt/connection.js';
import { SequenceStore } from '../telemetry/sequence-store.js';
import { TelemetryReporter } from '../telemetry/telemetry-reporter.js';
import { WindowAggregator } from '../telemetry/window-aggregator.js';
import { CapturedLog, tempDir, waitFor } from '../test-support/harness.js';
import { LinkProxy } from '../test-support/link-proxy.js';
import { startBroker, type TestBroker } from '../test-support/mqtt-broker.js';
import { Outbox, OutboxError, OUTBOX_FILE, type OutboxOptions } from './outbox.js';
import { OutboxStore } from './outbox-store.js';

const deviceId = 'outbox-1';
const telemetry = (seq: number): TelemetryWindow => ({ deviceId, seq, windowStart: seq * 10, windowEnd: seq * 10 + 10, model: null, cameras: [] });
const event = (seq: number): DetectionEvent => ({
  deviceId,
  seq,
  eventId: `e${seq}`,
  kind: 'new',
  cameraId: 'gate',
  label: 'cat',
  topConfidence: 0.9,
  startedAt: 1,
  at: 1 + seq,
});

type Kind = 'telemetry' | 'events';
const key = (kind: Kind, seq: number) => `${kind}:${seq}`;

/** Subscribes the device's telemetry and events topics on the broker itself and keeps what arrives, in order. */
class Receiver {
  readonly arrived: string[] = [];
  readonly windows: TelemetryWindow[] = [];
  markers = 0;

  private constructor(private readonly client: MqttClient) {
    client.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString('utf8')) as { seq?: number; marker?: number };
      if (body.marker !== undefined) this.markers++;
      else if (topic === deviceTopic(deviceId, 'telemetry')) {
        this.arrived.push(key('telemetry', Number(body.seq)));
        this.windows.push(body as TelemetryWindow);
      } else this.arrived.push(key('events', Number(body.seq)));
    });
  }

  static async start(url: string): Promise<Receiver> {
    const client = await mqtt.connectAsync(url, { clientId: `receiver-${deviceId}`, reconnectPeriod: 0 });
    await client.subscribeAsync([deviceTopic(deviceId, 'telemetry'), deviceTopic(deviceId, 'events')], { qos: 1 });
    return new Receiver(client);
  }

  /** Each record once, in the order of its first arrival. */
  get distinct(): string[] {
    return [...new Set(this.arrived)];
  }

  stop(): Promise<void> {
    return this.client.endAsync();
  }
}

describe('outbox (real SQLite, real aedes broker, real mqtt.js)', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  interface Rig {
    broker: TestBroker;
    proxy: LinkProxy;
    receiver: Receiver;
    dataDir: string;
    /** a device-side connection through the proxy, and an outbox on it */
    device(over?: Partial<OutboxOptions>, link?: { keepaliveSeconds: number }): Promise<{ connection: MqttConnection; outbox: Outbox; log: CapturedLog }>;
  }

  async function rig(): Promise<Rig> {
    const broker = await startBroker();
    const proxy = await LinkProxy.start(broker.port);
    const receiver = await Receiver.start(broker.url);
    const dir = await tempDir('perch-outbox-');
    cleanup.push(
      () => dir.remove(),
      () => broker.close(),
      () => proxy.close(),
      () => receiver.stop(),
    );
    return {
      broker,
      proxy,
      receiver,
      dataDir: dir.path,
      async device(over = {}, link = { keepaliveSeconds: 30 }) {
        const log = new CapturedLog();
        const connection = new MqttConnection(
          { deviceId, url: proxy.url, username: deviceId, password: undefined, connectTimeoutMs: 5000, keepaliveSeconds: link.keepaliveSeconds, reconnect: { minMs: 20, maxMs: 200 } },
          log.logger,
        );
        const outbox = new Outbox(
          { deviceId, dataDir: dir.path, maxBytes: 64 * 1024 * 1024, dropPolicy: 'drop-oldest', inFlight: 4, flushTimeoutMs: 5000, ...over },
          connection,
          log.logger,
        );
        outbox.start();
        connection.start();
        cleanup.push(async () => {
          await outbox.stop();
          await connection.stop();
        });
        return { connection, outbox, log };
      },
    };
  }

  /** Telemetry 0..n-1 with an event after every second window, so kinds interleave. */
  function enqueueMixed(outbox: Outbox, from: number, n: number): string[] {
    const keys: string[] = [];
    for (let i = from; i < from + n; i++) {
      if (i % 3 === 2) {
        expect(outbox.enqueue('events', event(i)).accepted).toBe(true);
        keys.push(key('events', i));
      } else {
        expect(outbox.enqueue('telemetry', telemetry(i)).accepted).toBe(true);
        keys.push(key('telemetry', i));
      }
    }
    return keys;
  }

  it('publishes in acceptance order at QoS 1, a bounded number in flight, and deletes a record only after its PUBACK', async () => {
    const { proxy, receiver, device } = await rig();
    const { connection, outbox } = await device({ inFlight: 4 });
    await waitFor('connected', () => connection.connected);
    // The broker gets every packet but its PUBACKs are held back on the way to the device.
    proxy.hold();
    const keys = enqueueMixed(outbox, 0, 10);
    await waitFor('four records at the broker', () => receiver.arrived.length >= 4);
    // A marker behind them on the same socket: once it is through, anything more the outbox sent would be too.
    void connection.publish('telemetry', encodeJson({ marker: 1 }), { qos: 1 }).catch(() => undefined);
    await waitFor('the marker', () => receiver.markers === 1);
    expect(receiver.arrived).toEqual(keys.slice(0, 4));
    expect(outbox.stats.pending).toBe(10);

    proxy.release();
    await waitFor('all acknowledged', () => outbox.stats.pending === 0 && receiver.arrived.length === 10);
    // No reconnect, so no duplicate: exactly the acceptance order.
    expect(receiver.arrived).toEqual(keys);
  });

  it('a link that drops with PUBACKs outstanding: after the reconnect it resends from the oldest record; nothing is lost', async () => {
    const { proxy, receiver, device } = await rig();
    const { connection, outbox, log } = await device({ inFlight: 4 });
    await waitFor('connected', () => connection.connected);
    proxy.hold();
    const keys = enqueueMixed(outbox, 0, 6);
    await waitFor('four records at the broker', () => receiver.arrived.length >= 4);
    proxy.cut();
    proxy.release();
    await waitFor('disconnected', () => log.find((l) => l.msg === 'mqtt disconnected; reconnecting'));
    keys.push(...enqueueMixed(outbox, 6, 3));
    await waitFor('everything acknowledged', () => outbox.stats.pending === 0 && receiver.distinct.length === keys.length);
    expect(receiver.distinct).toEqual(keys);
    // The four whose PUBACKs were lost went out again.
    expect(receiver.arrived.length).toBeGreaterThanOrEqual(keys.length + 4);
  });

  it('a link that goes silent: the keepalive gives up, mqtt.js fails the outstanding publishes, and the outbox sends them again', async () => {
    const { proxy, receiver, device } = await rig();
    // A 1 s keepalive makes the silent link show quickly.
    const { connection, outbox, log } = await device({ inFlight: 4 }, { keepaliveSeconds: 1 });
    await waitFor('connected', () => connection.connected);
    proxy.hold();
    const keys = enqueueMixed(outbox, 0, 4);
    await waitFor('four records at the broker', () => receiver.arrived.length === 4);
    // PINGRESPs are held back too: mqtt.js ends the connection itself and fails what it had in flight.
    await waitFor('publish failures', () => log.find((l) => l.msg === 'outbox publish failed; resending from the oldest record'), 30_000);
    proxy.cut();
    proxy.release();
    // mqtt.js resends those four from its own store, but their callbacks are gone: only the outbox's own
    // resend gets the PUBACKs that let it delete them.
    await waitFor('everything acknowledged', () => outbox.stats.pending === 0, 30_000);
    expect(receiver.distinct).toEqual(keys);
  });

  it('with the broker unreachable records wait on disk, survive a restart of the outbox, and all go in order once it is back', async () => {
    const { proxy, receiver, dataDir, device } = await rig();
    proxy.down();
    const first = await device();
    await waitFor('a refused connection', () => first.log.find((l) => l.msg === 'mqtt disconnected; reconnecting'));
    const keys = enqueueMixed(first.outbox, 0, 20);
    expect(first.outbox.stats.pending).toBe(20);
    // With the link down, stop() cannot flush and does not wait for the deadline to say so.
    await first.outbox.stop();
    await first.connection.stop();
    expect(first.log.find((l) => l.msg === 'outbox closed')).toMatchObject({ flushed: false, pending: 20 });

    const second = await device();
    expect(second.outbox.stats.pending).toBe(20);
    keys.push(...enqueueMixed(second.outbox, 20, 5));
    proxy.up();
    await waitFor('everything acknowledged', () => second.outbox.stats.pending === 0 && receiver.distinct.length === keys.length);
    expect(receiver.distinct).toEqual(keys);
    expect(receiver.arrived).toEqual(keys);
  });

  it('stop() with the link up waits for the PUBACK of everything stored (the SIGTERM path)', async () => {
    const { proxy, receiver, dataDir, device } = await rig();
    const { connection, outbox, log } = await device({ inFlight: 8, flushTimeoutMs: 8000 });
    await waitFor('connected', () => connection.connected);
    proxy.hold();
    const keys = enqueueMixed(outbox, 0, 5);
    await waitFor('five records at the broker', () => receiver.arrived.length === 5);
    const stopping = outbox.stop();
    proxy.release();
    await stopping;
    expect(log.find((l) => l.msg === 'outbox closed')).toMatchObject({ flushed: true, pending: 0 });
    expect(receiver.arrived).toEqual(keys);
    const file = OutboxStore.open(join(dataDir, OUTBOX_FILE), { maxBytes: 1024 * 1024, dropPolicy: 'drop-oldest' }, log.logger);
    expect(file.pending).toBe(0);
    file.close();
  });

  it('a full disk: windows keep coming, the oldest are dropped, and the windows count every drop', async () => {
    const { proxy, receiver, dataDir, device } = await rig();
    proxy.down();
    // 12 pages of 4 KiB: a dozen windows fit, then inserts fail with SQLITE_FULL as on a full disk.
    const { outbox, log } = await device({ maxPageCount: 12, inFlight: 2 });
    const seq = new SequenceStore(dataDir);
    await seq.load();
    const model = { name: 'm', version: '1', sha256: 'a'.repeat(64) };
    const reporter = new TelemetryReporter(deviceId, new WindowAggregator(['gate']), seq, outbox, 50, log.logger);
    reporter.switchModel(model);
    reporter.start();
    cleanup.push(() => reporter.stop());
    await waitFor('drops', () => outbox.stats.droppedTotal >= 20);
    expect(log.find((l) => typeof l.msg === 'string' && l.msg.startsWith('outbox full: dropped the oldest'))).toBeDefined();

    proxy.up();
    await waitFor('the backlog delivered', () => outbox.stats.pending <= 1);
    // One more window closed with the outbox drained: it carries the final count.
    const drained = receiver.windows.length;
    await waitFor('a window after the backlog', () => receiver.windows.length > drained + 1);
    await reporter.stop();
    await outbox.stop();

    const seqs = [...new Set(receiver.windows.map((w) => w.seq))].sort((a, b) => a - b);
    const last = receiver.windows.find((w) => w.seq === seqs.at(-1));
    const missing = (seqs.at(-1) ?? 0) + 1 - seqs.length;
    expect(missing).toBeGreaterThanOrEqual(20);
    // Every window that is not there is one the outbox counted as dropped, no more, no less.
    expect(last?.outbox?.droppedTotal).toBe(missing);
    expect(outbox.stats.droppedTotal).toBe(missing);
    const inWindows = receiver.windows.reduce((n, w) => n + (w.outbox?.droppedInWindow ?? 0), 0);
    expect(inWindows).toBeGreaterThan(0);
    expect(inWindows).toBeLessThanOrEqual(missing);
    // What was kept is the newest: the seqs after the gap are contiguous.
    expect(seqs.slice(seqs.length - 5)).toEqual(Array.from({ length: 5 }, (_, i) => (seqs.at(-1) ?? 0) - 4 + i));
  });

  it('a file that cannot be opened does not stop the agent: records are dropped and counted until it opens', async () => {
    const { receiver, dataDir, device } = await rig();
    // A folder where the file should be: SQLite cannot open it, as with a full disk at boot or a bad permission.
    mkdirSync(join(dataDir, OUTBOX_FILE));
    const { outbox, log } = await device({ reopenIntervalMs: 0 });
    expect(log.find((l) => l.msg === 'outbox file cannot be opened; records are dropped and counted until it can')).toBeDefined();
    expect(outbox.enqueue('telemetry', telemetry(0))).toMatchObject({ accepted: false, reason: 'storage-error' });
    expect(outbox.enqueue('events', event(1))).toMatchObject({ accepted: false, reason: 'storage-error' });
    expect(outbox.takeWindowStats()).toEqual({ pending: 0, droppedInWindow: 2, droppedTotal: 2 });

    rmSync(join(dataDir, OUTBOX_FILE), { recursive: true });
    expect(outbox.enqueue('telemetry', telemetry(2)).accepted).toBe(true);
    await waitFor('delivered', () => receiver.arrived.includes(key('telemetry', 2)));
    expect(outbox.takeWindowStats()).toMatchObject({ droppedInWindow: 0, droppedTotal: 2 });
    // The count went into the file with the first write.
    await outbox.stop();
    const file = OutboxStore.open(join(dataDir, OUTBOX_FILE), { maxBytes: 1024 * 1024, dropPolicy: 'drop-oldest' }, log.logger);
    expect(file.droppedTotal).toBe(2);
    file.close();
  });

  it('refuses invalid records with a clear error and stores nothing', async () => {
    const { device } = await rig();
    const { outbox } = await device();
    expect(() => outbox.enqueue('telemetry', { ...telemetry(0), seq: -1 })).toThrow(new OutboxError('invalid telemetry record: seq: Too small: expected number to be >=0'));
    expect(() => outbox.enqueue('events', { ...event(0), deviceId: 'someone-else' })).toThrow(/names device someone-else, this agent is outbox-1/);
    expect(() => outbox.enqueue('nonsense' as 'events', event(0))).toThrow(/unknown outbox record kind nonsense/);
    expect(outbox.stats.pending).toBe(0);
    await outbox.stop();
    expect(() => outbox.enqueue('events', event(0))).toThrow(/outbox is not started/);
  });
});
