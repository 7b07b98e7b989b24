import { randomUUID } from 'node:crypto';
import type { EventsConfig } from './events-config.js';

export type TrackerOptions = Pick<EventsConfig, 'minConfidence' | 'debounceFrames' | 'appearMs' | 'disappearMs' | 'updateIntervalMs' | 'ignoreLabels'>;

/** One frame's top-1 prediction on one camera; `at` in Unix ms. */
export interface Observation {
  cameraId: string;
  label: string;
  confidence: number;
  at: number;
}

/** What the tracker decided: an event to publish (it has no `seq` yet). */
export interface Transition {
  kind: 'new' | 'update' | 'end';
  eventId: string;
  cameraId: string;
  label: string;
  topConfidence: number;
  startedAt: number;
  /** when it was decided; for `end`, when the label was last seen */
  at: number;
}

interface Track {
  /** set once the label has appeared: the event in progress */
  eventId: string | null;
  /** consecutive frames the label was seen on, while pending */
  hits: number;
  firstSeen: number;
  lastSeen: number;
  lastSent: number;
  top: number;
}

/**
 * The per-camera, per-label state machine behind detection events, with no
 * timers or I/O of its own: frames go in (observe), time passes (tick), and
 * out come new / update / end transitions.
 *
 * A label is *seen* on a frame when it is that frame's top-1 with at least
 * minConfidence and not ignored. It *appears* (`new`) once seen on
 * debounceFrames consecutive frames of its camera, spanning at least
 * appearMs; a frame without it before then forgets it (a flicker makes no
 * event). While it stays, an `update` every updateIntervalMs. It *ends* once
 * not seen for disappearMs, by a later frame or by tick() when the camera
 * has gone quiet.
 */
export class DetectionTracker {
  private readonly cameras = new Map<string, Map<string, Track>>();
  private readonly ignored: ReadonlySet<string>;

  constructor(
    private readonly opts: TrackerOptions,
    private readonly newId: () => string = randomUUID,
  ) {
    this.ignored = new Set(opts.ignoreLabels);
  }

  observe(o: Observation): Transition[] {
    const out: Transition[] = [];
    let tracks = this.cameras.get(o.cameraId);
    if (!tracks) {
      tracks = new Map();
      this.cameras.set(o.cameraId, tracks);
    }
    const seen = o.confidence >= this.opts.minConfidence && !this.ignored.has(o.label);
    for (const [label, t] of tracks) {
      if (seen && label === o.label) continue;
      if (t.eventId === null) tracks.delete(label);
      else if (o.at - t.lastSeen >= this.opts.disappearMs) out.push(this.end(o.cameraId, label, t.eventId, t, tracks));
    }
    if (!seen) return out;

    let t = tracks.get(o.label);
    if (!t) {
      t = { eventId: null, hits: 0, firstSeen: o.at, lastSeen: o.at, lastSent: o.at, top: 0 };
      tracks.set(o.label, t);
    }
    t.hits++;
    t.lastSeen = o.at;
    t.top = Math.max(t.top, o.confidence);
    if (t.eventId === null) {
      if (t.hits >= this.opts.debounceFrames && o.at - t.firstSeen >= this.opts.appearMs) {
        t.eventId = this.newId();
        t.lastSent = o.at;
        out.push(this.transition('new', t.eventId, o.cameraId, o.label, t, o.at));
      }
    } else if (o.at - t.lastSent >= this.opts.updateIntervalMs) {
      t.lastSent = o.at;
      out.push(this.transition('update', t.eventId, o.cameraId, o.label, t, o.at));
    }
    return out;
  }

  /** Ends events whose label has not been seen for disappearMs, whether or not frames still come. */
  tick(now: number): Transition[] {
    const out: Transition[] = [];
    for (const [cameraId, tracks] of this.cameras) {
      for (const [label, t] of tracks) {
        if (now - t.lastSeen < this.opts.disappearMs) continue;
        if (t.eventId !== null) out.push(this.end(cameraId, label, t.eventId, t, tracks));
        else tracks.delete(label);
      }
    }
    return out;
  }

  /** Ends every open event (the agent is stopping) and forgets everything. */
  endAll(): Transition[] {
    const out: Transition[] = [];
    for (const [cameraId, tracks] of this.cameras) for (const [label, t] of tracks) if (t.eventId !== null) out.push(this.end(cameraId, label, t.eventId, t, tracks));
    this.cameras.clear();
    return out;
  }

  /** Events in progress, for tests and diagnostics. */
  get open(): number {
    let n = 0;
    for (const tracks of this.cameras.values()) for (const t of tracks.values()) if (t.eventId !== null) n++;
    return n;
  }

  private end(cameraId: string, label: string, eventId: string, t: Track, tracks: Map<string, Track>): Transition {
    tracks.delete(label);
    return this.transition('end', eventId, cameraId, label, t, t.lastSeen);
  }

  private transition(kind: Transition['kind'], eventId: string, cameraId: string, label: string, t: Track, at: number): Transition {
    return { kind, eventId, cameraId, label, topConfidence: Math.min(1, Math.max(0, t.top)), startedAt: t.firstSeen, at };
  }
}
