import type { ModelTensorInfo } from '@perch/shared';
import { InferenceSession } from 'onnxruntime-node';

export interface ModelIo {
  inputs: ModelTensorInfo[];
  outputs: ModelTensorInfo[];
}

/**
 * The inputs and outputs a model file declares, read once at start (nothing
 * runs yet, so the event loop has nothing better to do): standalone mode
 * fills in names and sizes the installer did not give, and checks the rest
 * against them before any camera starts.
 */
export async function readModelIo(path: string): Promise<ModelIo> {
  const session = await InferenceSession.create(path);
  try {
    const info = (m: InferenceSession.ValueMetadata): ModelTensorInfo => ({ name: m.name, type: m.isTensor ? m.type : undefined, shape: m.isTensor ? m.shape : [] });
    return { inputs: session.inputMetadata.map(info), outputs: session.outputMetadata.map(info) };
  } finally {
    await session.release();
  }
}
