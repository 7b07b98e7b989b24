/**
 * Runs in a worker thread: onnxruntime-node's session.run() blocks the
 * thread it runs on, and the main thread must stay free for MQTT and ffmpeg.
 * One worker holds one session for its whole life; a new model gets a new
 * worker (re-creating sessions in one process leaks, onnxruntime#25325).
 * Frames arrive already preprocessed, so the worker does nothing but run
 * the session: the next frame is prepared on the main thread while this
 * one runs.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { checkModelIo } from '@perch/shared';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { inputDims } from './preprocess.js';
import { toProbabilities } from './postprocess.js';
import { agentSessionOptions } from './session-options.js';
import type { BatchCalibration, FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

const port = parentPort;
if (!port) throw new Error('inference-worker must run in a worker thread');
const init = workerData as WorkerInit;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

type RunBatch = (input: Float32Array, frames: number) => Promise<Float32Array>;

/**
 * A batch is formed only if it costs at most this share of single frames'
 * time per frame: otherwise the first frame of a batch waits for the
 * others' compute and no frame gains (on a CPU a batch of four often costs
 * four single runs).
 */
const BATCH_PAYS_RATIO = 0.8;
/** Calibration times pairs of runs (one frame, a full batch) while within this budget: at least one pair, at most CALIBRATION_PAIRS. */
const CALIBRATION_BUDGET_MS = 300;
const CALIBRATION_PAIRS = 3;

/**
 * The best of a few timed runs of each size, after an untimed single run
 * (ORT plans memory per shape on a shape's first run; the full batch had
 * its first run as the load's warm-up).
 */
async function calibrate(run: RunBatch, batch: number, frameValues: number): Promise<BatchCalibration> {
  const input = new Float32Array(batch * frameValues);
  await run(input, 1);
  let singleMs = Number.POSITIVE_INFINITY;
  let batchMs = Number.POSITIVE_INFINITY;
  const began = performance.now();
  for (let i = 0; i < CALIBRATION_PAIRS && (i === 0 || performance.now() - began < CALIBRATION_BUDGET_MS); i++) {
    let t = performance.now();
    await run(input, 1);
    singleMs = Math.min(singleMs, performance.now() - t);
    t = performance.now();
    await run(input, batch);
    batchMs = Math.min(batchMs, performance.now() - t);
  }
  return { batch, singleMs, batchPerFrameMs: batchMs / batch };
}

async function load(): Promise<{ session: InferenceSession; run: RunBatch; maxBatch: number; calibration?: BatchCalibration }> {
  const meta = init.metadata;
  const session = await InferenceSession.create(init.modelPath, agentSessionOptions(init.intraOpThreads, init.allowSpinning));
  const info = (m: InferenceSession.ValueMetadata) => ({ name: m.name, type: m.isTensor ? m.type : undefined, shape: m.isTensor ? m.shape : [] });
  // Checked against what the model declares before any frame runs: a clear error instead of an ORT shape failure.
  const io = checkModelIo(session.inputMetadata.map(info), session.outputMetadata.map(info), meta);
  if (!io.ok) throw new Error(io.error);
  const maxBatch = io.batch === 'dynamic' ? Math.max(1, init.maxBatch) : 1;
  if (io.batch !== 'dynamic' && io.batch !== 1) throw new Error(`model's batch dimension is fixed at ${io.batch}; Perch feeds 1 or a dynamic batch`);
  const [, d1, d2, d3] = inputDims(meta);
  const frameValues = d1 * d2 * d3;
  const labels = meta.labels.length;
  const run: RunBatch = async (input, n) => {
    if (n < 1 || n > maxBatch || input.length < n * frameValues) throw new Error(`a run of ${n} frames needs ${n * frameValues} input values, got ${input.length}`);
    const tensor = new Tensor('float32', input.subarray(0, n * frameValues), [n, d1, d2, d3]);
    const results = await session.run({ [meta.input.name]: tensor });
    const out = results[meta.output.name];
    if (!out || out.type !== 'float32') throw new Error(`output '${meta.output.name}' is ${out?.type ?? 'missing'}, expected float32`);
    const data = out.data as Float32Array;
    if (data.length !== n * labels) throw new Error(`output '${meta.output.name}' has ${data.length} values for ${n} frames, the metadata names ${labels} labels`);
    const probabilities = new Float32Array(n * labels);
    for (let i = 0; i < n; i++) probabilities.set(toProbabilities(data.subarray(i * labels, (i + 1) * labels), meta.output.kind), i * labels);
    return probabilities;
  };
  // A warm-up at full batch: a model that fails on it fails here, at load, not on every frame.
  await run(new Float32Array(maxBatch * frameValues), maxBatch);
  if (maxBatch === 1 || init.batching === 'always') return { session, run, maxBatch };
  const calibration = await calibrate(run, maxBatch, frameValues);
  return { session, run, maxBatch: calibration.batchPerFrameMs <= BATCH_PAYS_RATIO * calibration.singleMs ? maxBatch : 1, calibration };
}

load().then(
  ({ session, run, maxBatch, calibration }) => {
    // Runs under way: the thread must not end inside session.run, whose native code aborts the
    // whole process when its thread is torn down beneath it ("terminate called after throwing Napi::Error").
    let running = 0;
    let closing = false;
    const closeWhenIdle = () => {
      if (!closing || running > 0) return;
      void session.release().finally(() => process.exit(0));
    };
    port.on('message', (msg: ToWorker) => {
      if (msg.type === 'close') {
        closing = true;
        closeWhenIdle();
        return;
      }
      if (msg.type !== 'run' || closing) return;
      running++;
      const started = performance.now();
      const startedAt = performance.timeOrigin + started;
      run(new Float32Array(msg.input), msg.frames).then(
        (probabilities) =>
          post({ type: 'result', id: msg.id, probabilities, startedAt, inferenceMs: performance.now() - started, input: msg.input }, [probabilities.buffer as ArrayBuffer, msg.input]),
        (err: Error) => post({ type: 'run-error', id: msg.id, message: err.message, input: msg.input }, [msg.input]),
      ).finally(() => {
        running--;
        closeWhenIdle();
      });
    });
    post({ type: 'ready', inputNames: [...session.inputNames], outputNames: [...session.outputNames], maxBatch, ...(calibration ? { calibration } : {}) });
  },
  (err: Error) => post({ type: 'load-error', message: err.message }),
);
