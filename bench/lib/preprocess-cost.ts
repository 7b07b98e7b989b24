/**
 * What the agent's preprocessing (rgb24 -> normalised tensor data) costs per
 * frame with nothing else on its thread: a fresh worker thread holding that
 * one preprocessor, the reference for the time the agent measures for it on
 * its busy main thread.
 */
import { Worker } from 'node:worker_threads';
import type { ModelMetadata } from '@perch/shared';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.agentUrl).then(({ createPreprocessor }) => {
  const preprocess = createPreprocessor(workerData.metadata);
  const frame = new Uint8Array(workerData.frame);
  const out = new Float32Array(frame.length);
  for (let i = 0; i < 200; i++) preprocess(frame, out);
  const start = performance.now();
  let now = start;
  let runs = 0;
  while (now - start < workerData.durationMs) {
    preprocess(frame, out);
    runs++;
    now = performance.now();
  }
  parentPort.postMessage((now - start) / runs);
});
`;

/** Mean milliseconds per frame. */
export async function preprocessCostMs(metadata: ModelMetadata, frame: Uint8Array, durationMs: number): Promise<number> {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { agentUrl: import.meta.resolve('@perch/agent'), metadata, frame: frame.slice(), durationMs },
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      worker.once('message', (ms: number) => resolve(ms));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`preprocessing timer exited with code ${code}`)));
    });
  } finally {
    await worker.terminate();
  }
}
