/** The seven 75 % bars across the top of SMPTE colour bars (ffmpeg's smptebars, GStreamer's smpte). */
const BARS: readonly [number, number, number][] = [
  [191, 191, 191],
  [191, 191, 0],
  [0, 191, 191],
  [0, 191, 0],
  [191, 0, 191],
  [191, 0, 0],
  [0, 0, 191],
];
const TOLERANCE = 60;

/**
 * Why an rgb24 frame is not SMPTE bars, or null if it is: each bar's centre,
 * a quarter down the frame, has the bar's colour. A frame cut at the wrong
 * offset of ffmpeg's byte stream (or of another size) fails this.
 */
export function smpteMismatch(frame: Uint8Array, width: number, height: number): string | null {
  if (frame.length !== width * height * 3) return `frame has ${frame.length} bytes, not ${width}x${height}x3`;
  const y = Math.floor(height / 4);
  for (let i = 0; i < BARS.length; i++) {
    const x = Math.floor(((i + 0.5) * width) / BARS.length);
    const at = (y * width + x) * 3;
    const got = [frame[at] ?? -1, frame[at + 1] ?? -1, frame[at + 2] ?? -1];
    const want = BARS[i] ?? [0, 0, 0];
    if (got.some((v, c) => Math.abs(v - (want[c] ?? 0)) > TOLERANCE)) return `bar ${i} at (${x},${y}) is rgb(${got.join(',')}), want about rgb(${want.join(',')})`;
  }
  return null;
}
