/**
 * The device side of bench/delivery.ts, run as its own process so the
 * control plane and broker keep the benchmark's process to themselves, as
 * on a real site. Given a spec (JSON, first argument) it fetches one
 * artifact with `clients` downloaders at once and prints one JSON line with
 * the timings:
 *
 * - `mqtt`: each downloader is a real mqtt.js connection (the agent's
 *   MqttConnection, logged in as its own device) running the agent's real
 *   ArtifactDownloader: chunk requests, a window in flight, every chunk
 *   hashed and written at its offset in its own part file.
 * - `http`: the baseline: plain GETs of the control plane's artifact route,
 *   streamed to a file and hashed on the way, the same work per byte.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pino } from 'pino';
import { ArtifactDownloader } from '../../packages/agent/src/deployment/artifact-downloader.js';
import { MqttConnection } from '../../packages/agent/src/mqtt/connection.js';
import { MessageDispatcher } from '../../packages/agent/src/mqtt/dispatcher.js';
import { deliveryClientResultSchema, deliveryClientSpecSchema, type DeliveryClientResult, type DeliveryClientSpec } from './delivery-spec.js';

const log = pino({ level: 'warn' });

async function viaMqtt(spec: DeliveryClientSpec): Promise<DeliveryClientResult> {
  const clients = await Promise.all(
    Array.from({ length: spec.clients }, async (_, i) => {
      const deviceId = `${spec.deviceIdPrefix}-${i}`;
      const password = spec.passwords[i];
      if (password === undefined) throw new Error(`no password for ${deviceId}: ${spec.passwords.length} for ${spec.clients} clients`);
      const connection = new MqttConnection(
        { deviceId, url: spec.mqttUrl, username: deviceId, password, connectTimeoutMs: 20_000, keepaliveSeconds: 60, reconnect: { minMs: 200, maxMs: 2000 } },
        log,
      );
      const downloader = new ArtifactDownloader(connection, { chunkBytes: spec.chunkBytes, window: spec.window, requestTimeoutMs: 30_000, maxRetries: 5 }, log);
      const dispatcher = new MessageDispatcher(connection, log);
      dispatcher.register(downloader.handler());
      dispatcher.start();
      connection.start();
      await until(() => connection.connected);
      await connection.subscribe(['artifact/chunk']);
      return { connection, downloader, dispatcher, partPath: path.join(spec.dir, `${deviceId}.part`) };
    }),
  );
  const started = performance.now();
  const results = await Promise.all(
    clients.map(async (c) => {
      const r = await c.downloader.download({ sha256: spec.sha256, length: spec.length, partPath: c.partPath, signal: new AbortController().signal, chunkManifest: spec.chunkManifest });
      return { ms: performance.now() - started, bad: r.badChunks };
    }),
  );
  const wallMs = performance.now() - started;
  await Promise.all(clients.map((c) => c.connection.stop()));
  return { wallMs, clientMs: results.map((r) => r.ms), bytes: spec.length * spec.clients, badChunks: results.reduce((n, r) => n + r.bad, 0) };
}

async function viaHttp(spec: DeliveryClientSpec): Promise<DeliveryClientResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.clients });
  const headers = { authorization: `Bearer ${readFileSync(spec.apiTokenFile, 'utf8').trim()}` };
  const started = performance.now();
  const clientMs = await Promise.all(
    Array.from({ length: spec.clients }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        const file = createWriteStream(path.join(spec.dir, `http-${i}.part`));
        const hash = createHash('sha256');
        http
          .get(`${spec.apiUrl}/artifacts/${spec.sha256}`, { agent, headers }, (res) => {
            if (res.statusCode !== 200) return reject(new Error(`GET artifact: ${res.statusCode}`));
            res.on('data', (b: Buffer) => hash.update(b));
            res.pipe(file);
            file.on('finish', () => {
              if (hash.digest('hex') !== spec.sha256) reject(new Error('GET artifact: sha256 mismatch'));
              else resolve(performance.now() - started);
            });
          })
          .on('error', reject);
      }),
    ),
  );
  const wallMs = performance.now() - started;
  agent.destroy();
  return { wallMs, clientMs, bytes: spec.length * spec.clients, badChunks: 0 };
}

async function until(check: () => boolean): Promise<void> {
  const end = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > end) throw new Error('client did not connect within 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  const spec = deliveryClientSpecSchema.parse(JSON.parse(process.argv[2] ?? '{}'));
  await mkdir(spec.dir, { recursive: true });
  try {
    const result = spec.mode === 'mqtt' ? await viaMqtt(spec) : await viaHttp(spec);
    process.stdout.write(`${JSON.stringify(deliveryClientResultSchema.parse(result))}\n`);
  } finally {
    await rm(spec.dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
