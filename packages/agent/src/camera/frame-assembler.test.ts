import { describe, expect, it } from 'vitest';
import { FrameAssembler } from './frame-assembler.js';
import { LatestFrameSlot } from './latest-frame-slot.js';

describe('frame assembler', () => {
  it('cuts a byte stream into exact frames, each in its own buffer', () => {
    const frames: Uint8Array[] = [];
    const a = new FrameAssembler(4, (f) => frames.push(f));
    a.push(Uint8Array.from([1, 2, 3]));
    a.push(Uint8Array.from([4, 5, 6, 7, 8, 9, 10]));
    a.push(Uint8Array.from([11]));
    expect(frames.map((f) => [...f])).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    a.push(Uint8Array.from([12]));
    expect(frames).toHaveLength(3);
    expect([...(frames[2] ?? [])]).toEqual([9, 10, 11, 12]);
    // Transferable: no frame shares memory with another.
    expect(new Set(frames.map((f) => f.buffer)).size).toBe(3);
    expect(frames.every((f) => f.byteOffset === 0 && f.buffer.byteLength === 4)).toBe(true);
  });

  it('drops a partial frame on reset', () => {
    const frames: Uint8Array[] = [];
    const a = new FrameAssembler(2, (f) => frames.push(f));
    a.push(Uint8Array.from([1]));
    a.reset();
    a.push(Uint8Array.from([2, 3]));
    expect(frames.map((f) => [...f])).toEqual([[2, 3]]);
  });
});

describe('latest frame slot', () => {
  it('keeps the newest frame and says when it replaced one', () => {
    const slot = new LatestFrameSlot();
    expect(slot.put({ frame: Uint8Array.of(1), arrivedAt: 1 })).toBe(false);
    expect(slot.put({ frame: Uint8Array.of(2), arrivedAt: 2 })).toBe(true);
    expect(slot.take()?.arrivedAt).toBe(2);
    expect(slot.take()).toBeNull();
  });
});
