/**
 * One timer for a whole simulated fleet: a binary min-heap of (due time,
 * device, action) and a single `setTimeout` armed for the earliest entry.
 * Ten thousand devices each publishing every few seconds cost a few heap
 * operations per publish instead of ten thousand live timers. Entries carry
 * a token so a device can make its older entries stale (e.g. when its
 * telemetry interval changes) without searching the heap.
 */

export interface ScheduledEntry {
  at: number;
  device: number;
  action: number;
  token: number;
}

export interface SchedulerStats {
  /** entries run */
  ran: number;
  /** how late entries ran behind their due time (ms): the simulator's own lag, not the broker's */
  lagMaxMs: number;
  lagSumMs: number;
}

/** Entries run per event-loop turn before yielding, so socket reads are not held behind a burst of due work. */
const MAX_PER_TURN = 500;

export class FleetScheduler {
  private readonly heap: ScheduledEntry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private immediate: NodeJS.Immediate | null = null;
  private stopped = false;
  readonly stats: SchedulerStats = { ran: 0, lagMaxMs: 0, lagSumMs: 0 };

  constructor(private readonly run: (device: number, action: number, token: number) => void) {}

  get size(): number {
    return this.heap.length;
  }

  /** Runs `action` for `device` at `at` (a `Date.now()` time), or as soon as possible if that is past. */
  schedule(at: number, device: number, action: number, token = 0): void {
    if (this.stopped) return;
    this.push({ at, device, action, token });
    this.arm();
  }

  /** Lag figures since the last call. */
  takeLag(): { maxMs: number; meanMs: number; ran: number } {
    const s = this.stats;
    const out = { maxMs: s.lagMaxMs, meanMs: s.ran > 0 ? s.lagSumMs / s.ran : 0, ran: s.ran };
    s.lagMaxMs = 0;
    s.lagSumMs = 0;
    s.ran = 0;
    return out;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    this.heap.length = 0;
  }

  private arm(): void {
    if (this.immediate || this.stopped) return;
    const top = this.heap[0];
    if (!top) return;
    if (this.timer && this.timerAt <= top.at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = top.at;
    this.timer = setTimeout(() => this.drain(), Math.max(0, top.at - Date.now()));
  }

  private drain(): void {
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    this.immediate = null;
    const now = Date.now();
    let n = 0;
    const s = this.stats;
    while (!this.stopped) {
      const top = this.heap[0];
      if (!top || top.at > now) break;
      if (n === MAX_PER_TURN) {
        this.immediate = setImmediate(() => this.drain());
        return;
      }
      this.pop();
      const lag = now - top.at;
      s.ran++;
      s.lagSumMs += lag;
      if (lag > s.lagMaxMs) s.lagMaxMs = lag;
      n++;
      this.run(top.device, top.action, top.token);
    }
    this.arm();
  }

  private push(e: ScheduledEntry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as ScheduledEntry;
      if (p.at <= e.at) break;
      h[i] = p;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (h[r] as ScheduledEntry).at < (h[l] as ScheduledEntry).at ? r : l;
      if ((h[c] as ScheduledEntry).at >= last.at) break;
      h[i] = h[c] as ScheduledEntry;
      i = c;
    }
    h[i] = last;
  }
}
