/**
 * A 2 GB model end to end, on request (PERCH_BENCH_ONLY=large-model): a real
 * ONNX file of PERCH_BENCH_LARGE_MODEL_BYTES (default 2,000,000,000 bytes,
 * just under protobuf's 2 GiB cap on one ONNX file) is registered through
 * the REST API, signed, chunked, delivered over MQTT to a real agent process,
 * checked against its signed hashes, smoke-tested on its golden input and
 * switched on. Reports each step's time and the agent's peak memory.
 */
import { openAsBlob } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildBackboneModel } from '../test/support/backbone-model.js';
import type { Benchmark, BenchReport } from './lib/benchmark.js';
import { envNumber } from './lib/options.js';
import { PerchSite } from './lib/perch-site.js';
import { resident } from './lib/proc-stats.js';

const MiB = 2 ** 20;
const SIDE = 32;
const MODEL_NAME = 'large-model';

export const largeModel: Benchmark = {
  name: 'large-model',
  async run(_options, log): Promise<BenchReport> {
    const target = envNumber('PERCH_BENCH_LARGE_MODEL_BYTES', 2_000_000_000, { min: 1_000_000, max: 2 ** 31 - 4096, integer: true });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'perch-bench-large-'));
    // Weights are 3 x SIDE x SIDE x hidden floats; the rest of the file is a few KiB.
    const hidden = Math.floor((target - 64 * 1024) / (3 * SIDE * SIDE * 4));
    const modelFile = path.join(dir, 'large.onnx');
    let t = performance.now();
    {
      const model = buildBackboneModel({ side: SIDE, hidden, seed: 7, headSeed: 8 });
      await writeFile(modelFile, model.bytes);
      await writeFile(path.join(dir, 'metadata.json'), JSON.stringify(model.metadata));
    }
    const bytes = (await stat(modelFile)).size;
    const buildMs = performance.now() - t;
    log(`built a ${(bytes / MiB).toFixed(0)} MiB model in ${(buildMs / 1000).toFixed(1)} s`);

    const site = await PerchSite.start({ http: { maxUploadBytes: bytes + 16 * MiB } });
    try {
      t = performance.now();
      const form = new FormData();
      form.set('version', '1.0.0');
      form.set('metadata', JSON.stringify(buildBackboneModel({ side: SIDE, hidden: 8 }).metadata));
      form.set('file', await openAsBlob(modelFile), 'large.onnx');
      const res = await site.fetchApi(`/models/${MODEL_NAME}/versions`, { method: 'POST', body: form });
      if (res.status !== 201) throw new Error(`registering: ${res.status} ${await res.text()}`);
      const registered = (await res.json()) as { sha256: string; length: number };
      if (registered.length !== bytes) throw new Error(`registered ${registered.length} bytes of ${bytes}`);
      const registerMs = performance.now() - t;
      log(`registered (upload, ONNX check, golden output, chunk manifest, TUF target) in ${(registerMs / 1000).toFixed(1)} s`);

      const { agent, pid } = await site.startAgent({ deviceId: 'large-agent', cameras: [], deployment: { healthWindowSeconds: 0 }, log: { level: 'info' } });
      await site.waitOnline(agent);
      let peakRss = resident(pid).rss;
      const sampler = setInterval(() => {
        try {
          peakRss = Math.max(peakRss, resident(pid).rss);
        } catch {
          // the process is gone; waitActive says why
        }
      }, 250);
      t = performance.now();
      try {
        await site.waitActive(agent, await site.setDesired(agent.deviceId, { name: MODEL_NAME, version: '1.0.0', sha256: registered.sha256 }), 30 * 60_000);
      } finally {
        clearInterval(sampler);
      }
      const activeMs = performance.now() - t;
      const done = agent.find((l) => l.msg === 'download complete' && l['sha256'] === registered.sha256);
      if (!done) throw new Error(`the agent logged no 'download complete'\n${agent.tail()}`);
      const downloadMs = Number(done['ms']);
      const fetched = Number(done['fetched']);
      if (fetched !== bytes) throw new Error(`the agent fetched ${fetched} bytes of ${bytes}`);
      log(`delivered in ${(downloadMs / 1000).toFixed(1)} s, active after ${(activeMs / 1000).toFixed(1)} s`);
      const mibps = bytes / MiB / (downloadMs / 1000);
      return {
        title: `large model: ${(bytes / 1e9).toFixed(2)} GB registered, delivered over MQTT and switched on by a real agent`,
        table: {
          columns: ['step', 'seconds', 'note'],
          rows: [
            ['build the ONNX file', (buildMs / 1000).toFixed(1), `${(bytes / MiB).toFixed(0)} MiB`],
            ['register through the REST API', (registerMs / 1000).toFixed(1), 'upload, ONNX check, golden output, chunk manifest, TUF target'],
            ['download over MQTT', (downloadMs / 1000).toFixed(1), `${mibps.toFixed(0)} MiB/s, every chunk checked against the signed manifest`],
            ['desired -> active', (activeMs / 1000).toFixed(1), 'download, whole-file hash, golden input in a fresh worker, switch'],
          ],
        },
        notes: [`agent peak RSS ${(peakRss / MiB).toFixed(0)} MiB for a ${(bytes / MiB).toFixed(0)} MiB model`],
        figures: { bytes, buildMs, registerMs, downloadMs, activeMs, mibps, agentPeakRssBytes: peakRss },
      };
    } finally {
      await site.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
