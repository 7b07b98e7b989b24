/**
 * Native libraries the control plane loads the first time it needs them,
 * not at start: onnxruntime-node (checking, golden outputs and training)
 * and sharp (rendering training scenes) are about 40 MiB of resident memory
 * that a control plane which only runs a fleet never uses.
 */
import type sharpModule from 'sharp';

export type Ort = typeof import('onnxruntime-node');
export type Sharp = typeof sharpModule;

let ort: Promise<Ort> | null = null;
let sharp: Promise<Sharp> | null = null;

export function loadOnnxRuntime(): Promise<Ort> {
  ort ??= import('onnxruntime-node');
  return ort;
}

export function loadSharp(): Promise<Sharp> {
  sharp ??= import('sharp').then((m) => m.default as Sharp);
  return sharp;
}
