/** Initializer tensors, stored as little-endian raw_data (the compact form runtimes load fastest). */
import { onnx, type TensorProto } from './onnx-proto.js';

function assertShape(name: string, dims: readonly number[], length: number): void {
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`tensor ${name}: dims must be non-negative integers, got [${dims.join(', ')}]`);
  }
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== length) {
    throw new Error(`tensor ${name}: dims [${dims.join(', ')}] need ${expected} values, got ${length}`);
  }
}

export function floatTensor(name: string, dims: readonly number[], values: Float32Array): TensorProto {
  assertShape(name, dims, values.length);
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return { name, dims: [...dims], dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw };
}

export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  assertShape(name, dims, values.length);
  const raw = new Uint8Array(values.length * 8);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => {
    if (!Number.isSafeInteger(v)) throw new Error(`tensor ${name}: ${v} is not a safe integer`);
    view.setBigInt64(i * 8, BigInt(v), true);
  });
  return { name, dims: [...dims], dataType: onnx.TensorProto.DataType.INT64, rawData: raw };
}
