/** Graph input/output declarations. A string dim becomes a symbolic (dynamic) dimension such as the batch "N". */
import { onnx, type ValueInfoProto } from './onnx-proto.js';

export type Dim = number | string;

export function floatValueInfo(name: string, dims: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: {
          dim: dims.map((d) => {
            if (typeof d === 'string') return { dimParam: d };
            if (!Number.isInteger(d) || d < 1) throw new Error(`value ${name}: bad dim ${d}`);
            return { dimValue: d };
          }),
        },
      },
    },
  };
}
