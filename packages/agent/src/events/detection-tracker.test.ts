import { describe, expect, it } from 'vitest';
import { DetectionTracker, type Transition, type TrackerOptions } from './detection-tracker.js';

const base: TrackerOptions = { minConfidence: 0.6, debounceFrames: 3, appearMs: 0, disappearMs: 1000, updateIntervalMs: 5000, ignoreLabels: ['empty'] };

function tracker(opts: Partial<TrackerOptions> = {}): DetectionTracker {
  let n = 0;
  return new DetectionTracker({ ...base, ...opts }, () => `ev-${++n}`);
}

/** Feeds frames of one camera, 100 ms apart from `start`; returns every transition. */
function feed(t: DetectionTracker, frames: [label: string, confidence: number][], start = 0, cameraId = 'front'): Transition[] {
  return frames.flatMap(([label, confidence], i) => t.observe({ cameraId, label, confidence, at: start + i * 100 }));
}

const kinds = (ts: Transition[]) => ts.map((x) => `${x.kind}:${x.label}`);

describe('detection tracker', () => {
  it('a class that appears, persists and disappears makes new, update, end under one id', () => {
    const t = tracker();
    const appear = feed(t, [['cat', 0.7], ['cat', 0.8], ['cat', 0.9]]);
    expect(appear).toEqual([{ kind: 'new', eventId: 'ev-1', cameraId: 'front', label: 'cat', topConfidence: 0.9, startedAt: 0, at: 200 }]);
    // Still there 5 s after the `new`: one update, carrying the best confidence so far.
    const stay = feed(t, Array.from({ length: 50 }, (): [string, number] => ['cat', 0.95]), 300);
    expect(stay).toEqual([{ kind: 'update', eventId: 'ev-1', cameraId: 'front', label: 'cat', topConfidence: 0.95, startedAt: 0, at: 5200 }]);
    // Gone: frames without it end the event once disappearMs has passed since it was last seen (at 5200).
    expect(feed(t, [['dog', 0.3], ['empty', 0.99]], 5300)).toEqual([]);
    const end = t.observe({ cameraId: 'front', label: 'empty', confidence: 0.99, at: 6200 });
    expect(end).toEqual([{ kind: 'end', eventId: 'ev-1', cameraId: 'front', label: 'cat', topConfidence: 0.95, startedAt: 0, at: 5200 }]);
    expect(t.open).toBe(0);
  });

  it('a flicker shorter than debounceFrames makes no event', () => {
    const t = tracker();
    const out = feed(t, [['cat', 0.9], ['cat', 0.9], ['empty', 0.9], ['cat', 0.9], ['cat', 0.9], ['dog', 0.9], ['dog', 0.9], ['cat', 0.9]]);
    expect(out).toEqual([]);
    expect(t.tick(10_000)).toEqual([]);
    expect(t.open).toBe(0);
  });

  it('frames below minConfidence or of ignored labels do not count, and break a run', () => {
    const t = tracker({ debounceFrames: 2 });
    expect(feed(t, [['cat', 0.9], ['cat', 0.59], ['cat', 0.9], ['empty', 0.99], ['empty', 0.99], ['empty', 0.99]])).toEqual([]);
    expect(kinds(feed(t, [['cat', 0.6], ['cat', 0.6]], 1000))).toEqual(['new:cat']);
  });

  it('appearMs also has to pass before a class has appeared', () => {
    const t = tracker({ debounceFrames: 1, appearMs: 250 });
    const out = feed(t, [['cat', 0.9], ['cat', 0.9], ['cat', 0.9], ['cat', 0.9]]);
    expect(out).toEqual([expect.objectContaining({ kind: 'new', startedAt: 0, at: 300 })]);
  });

  it('a short gap inside disappearMs does not end the event', () => {
    const t = tracker({ debounceFrames: 1 });
    const out = feed(t, [['cat', 0.9], ['dog', 0.2], ['dog', 0.2], ['dog', 0.2], ['cat', 0.9], ['dog', 0.2]]);
    expect(kinds(out)).toEqual(['new:cat']);
    expect(t.open).toBe(1);
  });

  it('tick() ends an event when its camera stops sending frames', () => {
    const t = tracker({ debounceFrames: 1 });
    feed(t, [['cat', 0.9]], 0, 'front');
    feed(t, [['dog', 0.9]], 0, 'back');
    expect(t.tick(999)).toEqual([]);
    const ended = t.tick(1000);
    expect(ended.map((e) => `${e.kind}:${e.cameraId}:${e.label}:${e.at}`).sort()).toEqual(['end:back:dog:0', 'end:front:cat:0']);
    expect(t.open).toBe(0);
  });

  it('keeps cameras apart, gives every event its own id, and endAll() closes what is open', () => {
    const t = tracker({ debounceFrames: 2 });
    const out = [...feed(t, [['cat', 0.9], ['cat', 0.9]], 0, 'front'), ...feed(t, [['cat', 0.9], ['cat', 0.9]], 0, 'back')];
    expect(out.map((e) => `${e.cameraId}:${e.eventId}`)).toEqual(['front:ev-1', 'back:ev-2']);
    expect(t.endAll().map((e) => `${e.kind}:${e.eventId}`)).toEqual(['end:ev-1', 'end:ev-2']);
    expect(t.open).toBe(0);
  });
});
