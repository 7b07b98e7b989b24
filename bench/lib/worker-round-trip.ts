/**
 * The floor under any worker-thread design: a frame-sized buffer
 * transferred to a worker that computes for `workMs` (standing in for
 * inference) and back, with nothing else. What this costs beyond `workMs`
 * is the thread hop itself, and it grows with the wait: a thread that slept
 * through a whole inference takes longer to wake than a busy one.
 */
import { Worker } from 'node:worker_threads';

const ECHO_WORKER = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', ({ workMs, buffer }) => {
  const end = performance.now() + workMs;
  while (performance.now() < end);
  parentPort.postMessage({ buffer }, [buffer]);
});
`;

/** Mean milliseconds per round trip beyond `workMs`. */
export async function workerRoundTripMs(workMs: number, frameBytes: number, durationMs: number): Promise<number> {
  const worker = new Worker(ECHO_WORKER, { eval: true });
  try {
    let buffer = new ArrayBuffer(frameBytes);
    const once = (): Promise<ArrayBuffer> =>
      new Promise((resolve, reject) => {
        worker.once('error', reject);
        worker.once('message', (m: { buffer: ArrayBuffer }) => {
          worker.off('error', reject);
          resolve(m.buffer);
        });
        worker.postMessage({ workMs, buffer }, [buffer]);
      });
    for (let i = 0; i < 20; i++) buffer = await once();
    let runs = 0;
    const start = performance.now();
    let now = start;
    while (now - start < durationMs) {
      buffer = await once();
      runs++;
      now = performance.now();
    }
    return (now - start) / runs - workMs;
  } finally {
    await worker.terminate();
  }
}
