/**
 * Model delivery over the embedded broker, against plain HTTP from the same
 * control plane on the same machine: a 50 MB model (a real ONNX file,
 * random backbone weights) to one downloader and to 50 at once; the
 * telemetry latency of a device while a delivery runs; what a real agent
 * re-downloads for a head-only fine-tune; and the sweeps the chunk size
 * and window defaults were chosen from.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chunkBytes, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, type ChunkingParams, type ChunkManifestRef } from '@perch/shared';
import { DEFAULT_DOWNLOAD_WINDOW } from '../packages/agent/src/deployment/artifact-downloader.js';
import { buildBackboneModel, type BackboneModel } from '../test/support/backbone-model.js';
import { chunkManifestRefFor, signedChunkManifestRef } from '../test/support/chunk-manifest-ref.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { deliveryClientResultSchema, type DeliveryClientResult, type DeliveryClientSpec } from './lib/delivery-spec.js';
import { envNumber } from './lib/options.js';
import { PerchSite } from './lib/perch-site.js';
import { median, percentile, round } from './lib/stats.js';
import { TelemetryProbe } from './lib/telemetry-probe.js';

const MiB = 2 ** 20;
const CLIENT_SCRIPT = fileURLToPath(new URL('./lib/delivery-client.ts', import.meta.url));
/** Long enough for a p99 of its own: at one window every 10 ms, 1,000 samples (3 s gave 150, a p99 of the 2nd-highest). */
const PROBE_IDLE_MS = 10_000;
const SWEEP_CHUNK_BYTES = [64 * 1024, 256 * 1024, 1024 * 1024];
const SWEEP_WINDOWS = [4, 8, 16, 32];
const SWEEP_AVG_BYTES = [64 * 1024, 128 * 1024, 256 * 1024];
const MODEL_NAME = 'delivery-bench';
/** Input 32x32x3 = 3072 features; the backbone's width sets the size: 3072 x 4096 floats = 48 MiB. */
const SIDE = 32;

interface Registered {
  version: string;
  sha256: string;
  length: number;
  chunkManifest: ChunkManifestRef;
}

export const delivery: Benchmark = {
  name: 'delivery',
  async run(_options, log): Promise<BenchReport> {
    const sizeMiB = envNumber('PERCH_BENCH_DELIVERY_MIB', 48, { min: 1, max: 1024 });
    const fleet = envNumber('PERCH_BENCH_DELIVERY_CLIENTS', 50, { min: 2, max: 200, integer: true });
    const rounds = envNumber('PERCH_BENCH_DELIVERY_ROUNDS', 3, { min: 1, max: 10, integer: true });
    const fleetRounds = envNumber('PERCH_BENCH_DELIVERY_FLEET_ROUNDS', 1, { min: 1, max: 10, integer: true });
    const sweep = envNumber('PERCH_BENCH_DELIVERY_SWEEP', 1, { min: 0, max: 1, integer: true }) === 1;
    const hidden = Math.max(8, Math.round((sizeMiB * MiB) / (3 * SIDE * SIDE * 4)));
    const v1Model = buildBackboneModel({ side: SIDE, hidden, seed: 1, headSeed: 2 });
    // The same backbone with a new classifier head: what fine-tuning the last layer ships.
    const v2Model = buildBackboneModel({ side: SIDE, hidden, seed: 1, headSeed: 3 });
    const partsDir = await makePartsDir();
    const site = await PerchSite.start();
    const probe = new TelemetryProbe(site.cp);
    const notes: string[] = [];
    const rows: string[][] = [];
    const figures: Record<string, unknown> = { modelBytes: v1Model.bytes.length, fleet };
    try {
      await probe.connect();
      log(`registering a ${(v1Model.bytes.length / MiB).toFixed(1)} MiB model`);
      const v1 = await register(site, '1.0.0', v1Model);
      // Each downloader is a device of its own, provisioned as an operator would.
      const passwords = await Promise.all(Array.from({ length: fleet }, async (_, i) => (await site.cp.issueDeviceCredentials(`bench-dl-${i}`)).password));
      const spec = (over: Partial<DeliveryClientSpec>): DeliveryClientSpec => ({
        mode: 'mqtt',
        clients: 1,
        dir: path.join(partsDir, `run-${Math.random().toString(36).slice(2)}`),
        mqttUrl: `mqtt://127.0.0.1:${site.cp.mqttPort}`,
        passwords,
        apiUrl: site.api,
        apiTokenFile: site.cp.adminTokenFile,
        deviceIdPrefix: 'bench-dl',
        sha256: v1.sha256,
        length: v1.length,
        chunkManifest: v1.chunkManifest,
        chunkBytes: DEFAULT_CHUNK_BYTES,
        window: DEFAULT_DOWNLOAD_WINDOW,
        ...over,
      });

      // Telemetry with nothing else going on: the baseline for the latency during deliveries.
      probe.start();
      await sleep(PROBE_IDLE_MS);
      const idle = await probe.stop();

      // One downloader, then the fleet: HTTP and MQTT alternate (A B B A) so a slow patch of the machine hits both.
      const during: Record<string, number[]> = {};
      const duringHttp: Record<string, number[]> = {};
      for (const [clients, n] of [[1, rounds], [fleet, fleetRounds]] as const) {
        const http: DeliveryClientResult[] = [];
        const viaMqtt: DeliveryClientResult[] = [];
        const label = clients === 1 ? '1 downloader' : `${clients} downloaders`;
        const lat: number[] = [];
        const latHttp: number[] = [];
        for (let r = 0; r < n; r++) {
          for (const mode of r % 2 === 0 ? (['http', 'mqtt'] as const) : (['mqtt', 'http'] as const)) {
            // The probe runs for the client process's whole life (start-up included): both modes alike.
            probe.start();
            const res = await runClient(spec({ mode, clients }));
            (mode === 'mqtt' ? lat : latHttp).push(...(await probe.stop()));
            (mode === 'http' ? http : viaMqtt).push(res);
            log(`${label}, ${mode}: ${mibps(res).toFixed(0)} MiB/s`);
          }
        }
        during[label] = lat;
        duringHttp[label] = latHttp;
        const h = median(http.map(mibps));
        const m = median(viaMqtt.map(mibps));
        rows.push([`${label}, HTTP GET`, h.toFixed(0), '1.00', fmtMs(median(http.map((x) => x.wallMs))), `${p99(latHttp).toFixed(1)} ms`]);
        rows.push([`${label}, MQTT chunks`, m.toFixed(0), (m / h).toFixed(2), fmtMs(median(viaMqtt.map((x) => x.wallMs))), `${p99(lat).toFixed(1)} ms`]);
        figures[clients === 1 ? 'single' : 'fleet'] = {
          clients,
          runs: n,
          httpMiBps: round(h, 1),
          mqttMiBps: round(m, 1),
          ratio: round(m / h, 3),
          mqttRunsMiBps: viaMqtt.map((x) => round(mibps(x), 1)),
          httpRunsMiBps: http.map((x) => round(mibps(x), 1)),
          slowestClientMs: round(Math.max(...viaMqtt.flatMap((x) => x.clientMs)), 0),
          badChunks: viaMqtt.reduce((k, x) => k + x.badChunks, 0),
        };
      }
      const telemetry = {
        idle: latencySummary(idle),
        ...Object.fromEntries(Object.entries(during).map(([k, v]) => [`${k}, MQTT`, latencySummary(v)])),
        ...Object.fromEntries(Object.entries(duringHttp).map(([k, v]) => [`${k}, HTTP`, latencySummary(v)])),
      };
      figures.telemetryLatencyMs = telemetry;
      const fleetLabel = `${fleet} downloaders`;
      const fleetLat = during[fleetLabel] ?? [];
      const fleetHttp = duringHttp[fleetLabel] ?? [];
      figures.telemetryP99VsIdle = { mqtt: round(p99(fleetLat) / p99(idle), 2), http: round(p99(fleetHttp) / p99(idle), 2) };
      notes.push(
        `telemetry publish-to-ingest (a QoS 1 window every 10 ms through the same broker): p99 ${p99(idle).toFixed(1)} ms idle; during ${fleet} deliveries ` +
          `${p99(fleetLat).toFixed(1)} ms over MQTT (x${(p99(fleetLat) / p99(idle)).toFixed(2)}) and ${p99(fleetHttp).toFixed(1)} ms over HTTP (x${(p99(fleetHttp) / p99(idle)).toFixed(2)}); ` +
          `p50 ${pctl(idle, 50)} idle, ${pctl(fleetLat, 50)} MQTT, ${pctl(fleetHttp, 50)} HTTP`,
      );

      // A real agent process: the model, then a head-only fine-tune of it, through desired state.
      const agentFigures = await agentDeliveries(site, v1, v2Model, log);
      figures.agent = agentFigures;
      rows.push(['agent process, first version', (v1.length / MiB / (agentFigures.first.ms / 1000)).toFixed(0), '', fmtMs(agentFigures.first.ms), '']);
      rows.push(['agent process, head-only fine-tune', '', '', fmtMs(agentFigures.fineTune.ms), '']);
      notes.push(
        `head-only fine-tune: fetched ${kib(agentFigures.fineTune.fetched)} KiB (${pct(agentFigures.fineTune.fetched, v1.length)}) + manifest ${kib(agentFigures.fineTune.manifest)} KiB, ` +
          `reused ${(agentFigures.fineTune.reused / MiB).toFixed(1)} MiB from the installed version; the control plane served ${kib(agentFigures.fineTune.servedBytes)} KiB`,
      );

      if (sweep) {
        const s = await sweeps(spec, v1Model, v2Model, log);
        figures.sweep = s;
        notes.push(`window sweep (1 downloader, MiB/s, chunk bytes x window): ${s.transport.map((t) => `${kib(t.chunkBytes)}K x ${t.window}: ${t.mibps}`).join(', ')}`);
        notes.push(`head-only fine-tune re-downloaded by average chunk size: ${s.reuse.map((r) => `${kib(r.avgBytes)}K: ${r.fetchedPct}% (${r.chunks} chunks)`).join(', ')}`);
      }
      notes.push(
        `each MQTT downloader is a real mqtt.js client running the agent's ArtifactDownloader (${fleet} of them in one client process for the fleet rows), ` +
          `every chunk checked against the signed manifest and written to its own part file on tmpfs; the HTTP baseline GETs /api/v1/artifacts/{sha256} from the same control plane, hashing and writing the same bytes`,
      );
    } finally {
      await probe.close().catch(() => undefined);
      await site.stop();
      await rm(partsDir, { recursive: true, force: true });
    }
    return {
      title: 'delivery: a model over the embedded broker vs plain HTTP from the same control plane',
      table: { columns: ['path', 'MiB/s', 'vs HTTP', 'wall', 'telemetry p99'], rows },
      notes,
      figures,
    };
  },
};

interface AgentDelivery {
  fetched: number;
  reused: number;
  manifest: number;
  ms: number;
  servedBytes: number;
}

/** Delivers v1 to a real agent process, then the head-only fine-tune; what each download logged. */
async function agentDeliveries(site: PerchSite, v1: Registered, v2Model: BackboneModel, log: (line: string) => void): Promise<{ first: AgentDelivery; fineTune: AgentDelivery }> {
  // No camera runs, so there is no health window to watch: the model counts as active once switched on.
  const { agent } = await site.startAgent({ deviceId: 'bench-agent', cameras: [], deployment: { healthWindowSeconds: 0 }, log: { level: 'info' } });
  await site.waitOnline(agent);
  const deliver = async (version: string, sha256: string): Promise<AgentDelivery> => {
    const served = site.cp.stats.chunks.bytes;
    await site.waitActive(agent, await site.setDesired(agent.deviceId, { name: MODEL_NAME, version, sha256 }));
    const line = agent.find((l) => l.msg === 'download complete' && l['sha256'] === sha256);
    if (!line) throw new Error(`the agent logged no 'download complete' for ${version}\n${agent.tail()}`);
    const num = (k: string): number => Number(line[k] ?? Number.NaN);
    const d = { fetched: num('fetched'), reused: num('reused'), manifest: num('manifest'), ms: num('ms'), servedBytes: site.cp.stats.chunks.bytes - served };
    log(`agent ${version}: fetched ${kib(d.fetched)} KiB, reused ${kib(d.reused)} KiB in ${d.ms} ms`);
    return d;
  };
  const first = await deliver(v1.version, v1.sha256);
  const v2 = await register(site, '1.1.0', v2Model);
  const fineTune = await deliver(v2.version, v2.sha256);
  return { first, fineTune };
}

/** Throughput by request size and window (fixed-size requests, one downloader), and what a head-only fine-tune re-downloads by average chunk size. */
async function sweeps(spec: (over: Partial<DeliveryClientSpec>) => DeliveryClientSpec, v1: BackboneModel, v2: BackboneModel, log: (line: string) => void) {
  const transport: { chunkBytes: number; window: number; mibps: number }[] = [];
  for (const chunk of SWEEP_CHUNK_BYTES) {
    for (const window of SWEEP_WINDOWS) {
      const res = await runClient(spec({ chunkManifest: null, chunkBytes: chunk, window }));
      transport.push({ chunkBytes: chunk, window, mibps: round(mibps(res), 1) });
      log(`sweep ${kib(chunk)} KiB x ${window}: ${mibps(res).toFixed(0)} MiB/s`);
    }
  }
  const reuse = SWEEP_AVG_BYTES.map((avgBytes) => {
    const params: ChunkingParams = { minBytes: avgBytes / 4, avgBytes, maxBytes: Math.min(MAX_CHUNK_BYTES, avgBytes * 4) };
    const have = new Set(chunkBytes(v1.bytes, params).map((c) => c.sha256));
    const next = chunkBytes(v2.bytes, params);
    const fetched = next.filter((c) => !have.has(c.sha256)).reduce((n, c) => n + c.length, 0);
    return { avgBytes, chunks: next.length, fetchedBytes: fetched, fetchedPct: round((100 * fetched) / v2.bytes.length, 2) };
  });
  return { transport, reuse };
}

async function register(site: PerchSite, version: string, model: BackboneModel): Promise<Registered> {
  const form = new FormData();
  form.set('version', version);
  form.set('metadata', JSON.stringify(model.metadata));
  form.set('file', new Blob([model.bytes]), 'model.onnx');
  const res = await site.fetchApi(`/models/${MODEL_NAME}/versions`, { method: 'POST', body: form });
  if (res.status !== 201) throw new Error(`registering ${version}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { sha256: string; length: number };
  // What the registry signed for these bytes; the chunker is deterministic, so it is made here too.
  const chunkManifest = chunkManifestRefFor(model.bytes);
  const signed = signedChunkManifestRef(body);
  if (signed && signed.sha256 !== chunkManifest.sha256) throw new Error(`the registry signed chunk manifest ${signed.sha256}, expected ${chunkManifest.sha256}`);
  return { version, sha256: body.sha256, length: body.length, chunkManifest };
}

/** tmpfs where there is one: 50 part files of 50 MB measure the transfer, not the disk's write-back. */
async function makePartsDir(): Promise<string> {
  const base = process.platform === 'linux' ? '/dev/shm' : os.tmpdir();
  return mkdtemp(path.join(base, 'perch-delivery-'));
}

function runClient(spec: DeliveryClientSpec): Promise<DeliveryClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLIENT_SCRIPT, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`delivery client (${spec.mode} x ${spec.clients}) exited ${code}: ${err.slice(-2000)}`));
      const line = out.trim().split('\n').at(-1) ?? '';
      try {
        resolve(deliveryClientResultSchema.parse(JSON.parse(line)));
      } catch (e) {
        reject(new Error(`delivery client printed no result: ${(e as Error).message}\n${out.slice(-500)}\n${err.slice(-1000)}`));
      }
    });
  });
}

const mibps = (r: DeliveryClientResult): number => r.bytes / MiB / (r.wallMs / 1000);
const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const p99 = (xs: readonly number[]): number => percentile(sorted(xs), 99);
const pctl = (xs: readonly number[], p: number): string => `${percentile(sorted(xs), p).toFixed(1)} ms`;
const kib = (bytes: number): string => (bytes / 1024).toFixed(0);
const pct = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(2)} %`;

function latencySummary(xs: readonly number[]) {
  const s = sorted(xs);
  return { n: s.length, p50: round(percentile(s, 50), 2), p99: round(percentile(s, 99), 2), max: round(s.at(-1) ?? Number.NaN, 2) };
}
