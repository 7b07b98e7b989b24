/**
 * Single import point for the generated ONNX protobuf classes. The package is
 * CommonJS, so ESM code gets it as a default import.
 */
import onnxProto from 'onnx-proto';
import type { onnx as onnxTypes } from 'onnx-proto';

export const { onnx } = onnxProto;

export type TensorProto = onnxTypes.ITensorProto;
export type NodeProto = onnxTypes.INodeProto;
export type AttributeProto = onnxTypes.IAttributeProto;
export type ValueInfoProto = onnxTypes.IValueInfoProto;
export type GraphProto = onnxTypes.IGraphProto;
export type ModelProto = onnxTypes.IModelProto;
