/** Wraps a graph into a ModelProto and serialises it. */
import type { GraphBuilder } from './graph-builder.js';
import { onnx } from './onnx-proto.js';

/** IR version 8 pairs with opsets up to 17; every op used here exists unchanged in 13. */
export const IR_VERSION = 8;
export const OPSET_VERSION = 13;

export interface EncodeModelOptions {
  producerName: string;
  producerVersion: string;
  docString?: string;
  /** Stored as model metadata_props (visible to runtimes via session metadata). */
  metadata?: Record<string, string>;
}

export function encodeModel(graph: GraphBuilder, options: EncodeModelOptions): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET_VERSION }],
    producerName: options.producerName,
    producerVersion: options.producerVersion,
    docString: options.docString ?? '',
    graph: graph.toGraphProto(),
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  const problem = onnx.ModelProto.verify(model);
  if (problem) throw new Error(`encodeModel: invalid ModelProto: ${problem}`);
  return onnx.ModelProto.encode(model).finish();
}
