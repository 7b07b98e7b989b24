/**
 * How late each frame reached the agent by the stream's own clock. ffmpeg
 * logs every frame it passes on (showinfo: frame number and timestamp);
 * the agent notes when the same numbered frame arrives on the pipe. With
 * offset = arrival - timestamp, the quickest frame since the stream (or its
 * clock) started sets the baseline, and a frame's delay is its offset above
 * that: what decoding, a backlog in ffmpeg or the pipe, or a stalled network
 * added. The camera's own latency before its first frame is not in it — only
 * a clock shared with the camera could show that.
 */
export class StreamClock {
  /** frame number -> stream time (s) from stderr, and -> arrival (performance.now()) from stdout: either may come first */
  private readonly times = new Map<number, number>();
  private readonly arrivals = new Map<number, number>();
  private baseline = Number.POSITIVE_INFINITY;
  private lastTime = Number.NEGATIVE_INFINITY;

  constructor(private readonly onDelay: (delayMs: number) => void) {}

  /** ffmpeg logged frame `n` with stream time `seconds`. */
  frameTime(n: number, seconds: number): void {
    this.pair(n, seconds, this.times, this.arrivals, (at) => this.match(seconds, at));
  }

  /** Frame `n` (counted from 0 since ffmpeg started) arrived whole at `at`. */
  frameArrived(n: number, at: number): void {
    this.pair(n, at, this.arrivals, this.times, (seconds) => this.match(seconds, at));
  }

  /** Completes frame `n` with its other half if that came first; else keeps this half in `mine` for it. */
  private pair(n: number, value: number, mine: Map<number, number>, theirs: Map<number, number>, complete: (other: number) => void): void {
    const other = theirs.get(n);
    if (other === undefined) return this.remember(mine, n, value);
    theirs.delete(n);
    complete(other);
  }

  private match(seconds: number, at: number): void {
    // A clock that jumps back (a stream restarted by its source) starts a new baseline.
    if (seconds < this.lastTime) this.baseline = Number.POSITIVE_INFINITY;
    this.lastTime = seconds;
    const offset = at - seconds * 1000;
    this.baseline = Math.min(this.baseline, offset);
    this.onDelay(offset - this.baseline);
  }

  /** Keeps the unmatched side for a while; a frame whose other half never comes is forgotten. */
  private remember(map: Map<number, number>, n: number, value: number): void {
    map.set(n, value);
    if (map.size > 64) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
  }
}

/** Frame number and timestamp from one of showinfo's per-frame lines; null for any other line. */
export function parseShowinfo(line: string): { n: number; seconds: number } | null {
  const m = /Parsed_showinfo_\d+.*\bn:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:(-?[\d.]+(?:e[-+]?\d+)?)/.exec(line);
  if (!m) return null;
  const seconds = Number(m[2]);
  return Number.isFinite(seconds) ? { n: Number(m[1]), seconds } : null;
}
