/** Typed node attributes; ONNX requires the type tag to be set explicitly. */
import { onnx, type AttributeProto } from './onnx-proto.js';

const { AttributeType } = onnx.AttributeProto;

export type AttributeValue = number | readonly number[] | string;

export function intAttr(name: string, value: number): AttributeProto {
  if (!Number.isSafeInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer`);
  return { name, type: AttributeType.INT, i: value };
}

export function intsAttr(name: string, values: readonly number[]): AttributeProto {
  for (const v of values) if (!Number.isSafeInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer`);
  return { name, type: AttributeType.INTS, ints: [...values] };
}

export function floatAttr(name: string, value: number): AttributeProto {
  if (!Number.isFinite(value)) throw new Error(`attribute ${name}: ${value} is not finite`);
  return { name, type: AttributeType.FLOAT, f: value };
}

export function stringAttr(name: string, value: string): AttributeProto {
  return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
}
