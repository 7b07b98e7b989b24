/**
 * Runs in a worker thread: onnxruntime-node's session.run() blocks the
 * thread it runs on, and the main thread must stay free for MQTT and ffmpeg.
 * One worker holds one session for its whole life; a new model gets a new
 * worker (re-creating sessions in one process leaks, onnxruntime#25325).
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { checkModelIo } from '@perch/shared';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { createPreprocessor, inputDims } from './preprocess.js';
import { toProbabilities } from './postprocess.js';
import { agentSessionOptions } from './session-options.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

const port = parentPort;
if (!port) throw new Error('inference-worker must run in a worker thread');
const init = workerData as WorkerInit;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

type RunBatch = (frames: Uint8Array[]) => Promise<Float32Array>;

async function load(): Promise<{ session: InferenceSession; run: RunBatch; maxBatch: number }> {
  const meta = init.metadata;
  const session = await InferenceSession.create(init.modelPath, agentSessionOptions(init.intraOpThreads, init.allowSpinning));
  const info = (m: InferenceSession.ValueMetadata) => ({ name: m.name, type: m.isTensor ? m.type : undefined, shape: m.isTensor ? m.shape : [] });
  // Checked against what the model declares before any frame runs: a clear error instead of an ORT shape failure.
  const io = checkModelIo(session.inputMetadata.map(info), session.outputMetadata.map(info), meta);
  if (!io.ok) throw new Error(io.error);
  const maxBatch = io.batch === 'dynamic' ? Math.max(1, init.maxBatch) : 1;
  if (io.batch !== 'dynamic' && io.batch !== 1) throw new Error(`model's batch dimension is fixed at ${io.batch}; Perch feeds 1 or a dynamic batch`);
  const preprocess = createPreprocessor(meta);
  const [, d1, d2, d3] = inputDims(meta);
  const frameValues = d1 * d2 * d3;
  const buffer = new Float32Array(maxBatch * frameValues);
  const labels = meta.labels.length;
  const run: RunBatch = async (frames) => {
    const n = frames.length;
    frames.forEach((f, i) => preprocess(f, buffer.subarray(i * frameValues, (i + 1) * frameValues)));
    const input = new Tensor('float32', buffer.subarray(0, n * frameValues), [n, d1, d2, d3]);
    const results = await session.run({ [meta.input.name]: input });
    const out = results[meta.output.name];
    if (!out || out.type !== 'float32') throw new Error(`output '${meta.output.name}' is ${out?.type ?? 'missing'}, expected float32`);
    const data = out.data as Float32Array;
    if (data.length !== n * labels) throw new Error(`output '${meta.output.name}' has ${data.length} values for ${n} frames, the metadata names ${labels} labels`);
    const probabilities = new Float32Array(n * labels);
    for (let i = 0; i < n; i++) probabilities.set(toProbabilities(data.subarray(i * labels, (i + 1) * labels), meta.output.kind), i * labels);
    return probabilities;
  };
  // A warm-up on blank frames, at full batch: a model that fails on them fails here, at load, not on every frame.
  await run(Array.from({ length: maxBatch }, () => new Uint8Array(frameValues)));
  return { session, run, maxBatch };
}

load().then(
  ({ session, run, maxBatch }) => {
    port.on('message', (msg: ToWorker) => {
      if (msg.type !== 'run') return;
      const started = performance.now();
      run(msg.frames.map((f) => new Uint8Array(f))).then(
        // The frames go back with the result (no copy), so the main thread can keep them for snapshots.
        (probabilities) =>
          post({ type: 'result', id: msg.id, probabilities, inferenceMs: performance.now() - started, frames: msg.frames }, [probabilities.buffer as ArrayBuffer, ...msg.frames]),
        (err: Error) => post({ type: 'run-error', id: msg.id, message: err.message }),
      );
    });
    post({ type: 'ready', inputNames: [...session.inputNames], outputNames: [...session.outputNames], maxBatch });
  },
  (err: Error) => post({ type: 'load-error', message: err.message }),
);
