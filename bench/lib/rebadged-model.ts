import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/**
 * The same network with a different producer string: identical predictions
 * and cost, different bytes and sha256, so the registry holds it as another
 * version and a swap to it is a real download, verification and reload.
 */
export function rebadged(bytes: Uint8Array, producerVersion: string): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  m.producerVersion = producerVersion;
  return onnx.ModelProto.encode(m).finish();
}
