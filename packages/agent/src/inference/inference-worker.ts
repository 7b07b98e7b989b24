/**
 * Runs in a worker thread: onnxruntime-node's session.run() blocks the
 * thread it runs on, and the main thread must stay free for MQTT and ffmpeg.
 * One worker holds one session for its whole life; a new model gets a new
 * worker (re-creating sessions in one process leaks, onnxruntime#25325).
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { createPreprocessor, inputDims } from './preprocess.js';
import { toProbabilities } from './postprocess.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';
import { agentSessionOptions } from './session-options.js';

const port = parentPort;
if (!port) throw new Error('inference-worker must run in a worker thread');
const init = workerData as WorkerInit;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

async function load(): Promise<{ session: InferenceSession; run: (frame: Uint8Array) => Promise<Float32Array> }> {
  const meta = init.metadata;
  const session = await InferenceSession.create(init.modelPath, agentSessionOptions(init.intraOpThreads));
  if (!session.inputNames.includes(meta.input.name)) {
    throw new Error(`model has no input named '${meta.input.name}' (its inputs: ${session.inputNames.join(', ')})`);
  }
  if (!session.outputNames.includes(meta.output.name)) {
    throw new Error(`model has no output named '${meta.output.name}' (its outputs: ${session.outputNames.join(', ')})`);
  }
  const preprocess = createPreprocessor(meta);
  const dims = inputDims(meta);
  const input = new Float32Array(dims[1] * dims[2] * dims[3]);
  const run = async (frame: Uint8Array): Promise<Float32Array> => {
    preprocess(frame, input);
    const results = await session.run({ [meta.input.name]: new Tensor('float32', input, dims) });
    const out = results[meta.output.name];
    if (!out || out.type !== 'float32') throw new Error(`output '${meta.output.name}' is ${out?.type ?? 'missing'}, expected float32`);
    const data = out.data as Float32Array;
    if (data.length !== meta.labels.length) throw new Error(`output '${meta.output.name}' has ${data.length} values, the metadata names ${meta.labels.length} labels`);
    // Copied: the result buffer is transferred to the main thread.
    return toProbabilities(Float32Array.from(data), meta.output.kind);
  };
  // A warm-up on a blank frame: a model whose shapes do not fit its metadata fails here, at load, not on every frame.
  await run(new Uint8Array(meta.input.width * meta.input.height * 3));
  return { session, run };
}

load().then(
  ({ session, run }) => {
    port.on('message', (msg: ToWorker) => {
      if (msg.type !== 'run') return;
      const started = performance.now();
      run(new Uint8Array(msg.frame)).then(
        // The frame goes back with the result (no copy), so the main thread can keep it for snapshots.
        (probabilities) =>
          post({ type: 'result', id: msg.id, probabilities, inferenceMs: performance.now() - started, frame: msg.frame }, [probabilities.buffer as ArrayBuffer, msg.frame]),
        (err: Error) => post({ type: 'run-error', id: msg.id, message: err.message }),
      );
    });
    post({ type: 'ready', inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
  },
  (err: Error) => post({ type: 'load-error', message: err.message }),
);
