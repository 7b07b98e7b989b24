/**
 * Op helpers with the attribute conventions this project uses (opset 13, NCHW).
 * Each returns the name of the produced value.
 */
import { floatAttr, intAttr, intsAttr } from './attributes.js';
import type { GraphBuilder } from './graph-builder.js';
import { floatTensor } from './tensor.js';

export interface ConvOptions {
  /** [outChannels, inChannels, kH, kW] weights, flattened row-major. */
  weights: Float32Array;
  bias?: Float32Array;
  outChannels: number;
  inChannels: number;
  kernel: number;
  stride?: number;
  /** Symmetric zero padding; defaults to "same" for odd kernels with stride 1. */
  pad?: number;
  name: string;
}

export function conv(g: GraphBuilder, x: string, o: ConvOptions): string {
  const w = g.addInitializer(floatTensor(`${o.name}.weight`, [o.outChannels, o.inChannels, o.kernel, o.kernel], o.weights));
  const inputs = [x, w];
  if (o.bias) inputs.push(g.addInitializer(floatTensor(`${o.name}.bias`, [o.outChannels], o.bias)));
  const pad = o.pad ?? Math.floor(o.kernel / 2);
  const stride = o.stride ?? 1;
  return g.node('Conv', inputs, [
    intsAttr('kernel_shape', [o.kernel, o.kernel]),
    intsAttr('pads', [pad, pad, pad, pad]),
    intsAttr('strides', [stride, stride]),
  ]);
}

export const relu = (g: GraphBuilder, x: string): string => g.node('Relu', [x]);

/** Non-overlapping max pooling over kernelH x kernelW cells. */
export function maxPool(g: GraphBuilder, x: string, kernelH: number, kernelW = kernelH): string {
  return g.node('MaxPool', [x], [intsAttr('kernel_shape', [kernelH, kernelW]), intsAttr('strides', [kernelH, kernelW])]);
}

/** Non-overlapping average pooling over kernelH x kernelW cells, e.g. a coarse spatial grid. */
export function averagePool(g: GraphBuilder, x: string, kernelH: number, kernelW = kernelH): string {
  return g.node('AveragePool', [x], [intsAttr('kernel_shape', [kernelH, kernelW]), intsAttr('strides', [kernelH, kernelW])]);
}

export const globalAveragePool = (g: GraphBuilder, x: string): string => g.node('GlobalAveragePool', [x]);
export const globalMaxPool = (g: GraphBuilder, x: string): string => g.node('GlobalMaxPool', [x]);

/** [N, C, H, W] -> [N, C*H*W]. */
export const flatten = (g: GraphBuilder, x: string): string => g.node('Flatten', [x], [intAttr('axis', 1)]);

export function concat(g: GraphBuilder, xs: readonly string[], axis: number, outputName?: string): string {
  if (xs.length === 0) throw new Error('concat: needs at least one input');
  return g.node('Concat', xs, [intAttr('axis', axis)], outputName);
}

export interface GemmOptions {
  /** [outFeatures, inFeatures], i.e. used with transB = 1. */
  weights: Float32Array;
  bias: Float32Array;
  inFeatures: number;
  outFeatures: number;
  name: string;
}

/** Fully connected layer: x [N, in] -> [N, out]. */
export function gemm(g: GraphBuilder, x: string, o: GemmOptions): string {
  const w = g.addInitializer(floatTensor(`${o.name}.weight`, [o.outFeatures, o.inFeatures], o.weights));
  const b = g.addInitializer(floatTensor(`${o.name}.bias`, [o.outFeatures], o.bias));
  return g.node('Gemm', [x, w, b], [floatAttr('alpha', 1), floatAttr('beta', 1), intAttr('transB', 1)]);
}

export function softmax(g: GraphBuilder, x: string, axis: number, outputName?: string): string {
  return g.node('Softmax', [x], [intAttr('axis', axis)], outputName);
}
