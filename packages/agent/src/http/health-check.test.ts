import type { CameraState } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { checkHealth, type HealthSources } from './health-check.js';

const model = { name: 'pets', version: '2', sha256: 'a'.repeat(64) };
const online = (cameraId: string): CameraState => ({ cameraId, state: 'online', framesPerSecond: 5, restarts: 0 });

function sources(over: Partial<HealthSources> & { frames?: Record<string, number>; results?: Record<string, number> }): HealthSources {
  return {
    cameras: [
      { id: 'gate', stallTimeoutMs: 10_000 },
      { id: 'yard', stallTimeoutMs: 10_000 },
    ],
    activeModel: () => model,
    cameraStates: () => [online('gate'), online('yard')],
    lastFrameAt: (id) => over.frames?.[id],
    lastResultAt: (id) => over.results?.[id],
    ...over,
  };
}

describe('health check', () => {
  const now = 100_000;

  it('is ok when a model is active and every camera had a frame inferred within its stall window', () => {
    const r = checkHealth(sources({ frames: { gate: now - 100, yard: now - 9000 }, results: { gate: now - 50, yard: now - 9000 } }), now);
    expect(r).toMatchObject({ status: 'ok', model, reasons: [] });
    expect(r.cameras.map((c) => [c.id, c.ok, c.lastFrameAgeMs])).toEqual([
      ['gate', true, 100],
      ['yard', true, 9000],
    ]);
  });

  it('names every reason it is not: no model, a camera with no frame, a stalled camera, frames that are not inferred', () => {
    const yardState: CameraState = { ...online('yard'), state: 'offline', lastError: 'Connection refused' };
    const r = checkHealth(
      sources({
        activeModel: () => null,
        cameras: [
          { id: 'gate', stallTimeoutMs: 10_000 },
          { id: 'yard', stallTimeoutMs: 10_000 },
          { id: 'dock', stallTimeoutMs: 10_000 },
          { id: 'lane', stallTimeoutMs: 30_000 },
        ],
        cameraStates: () => [online('gate'), yardState, online('dock'), online('lane')],
        frames: { yard: now - 12_000, dock: now - 10, lane: now - 25_000 },
        results: { yard: now - 12_000, dock: now - 15_000, lane: now - 25_000 },
      }),
      now,
    );
    expect(r.status).toBe('unavailable');
    expect(r.reasons).toEqual([
      'model: no model active',
      'camera gate: no frame yet',
      'camera yard: no frame for 12.0 s (stall window 10.0 s) (last error: Connection refused)',
      'camera dock: frames arrive but none was inferred in the last 10.0 s',
    ]);
    // Each camera has its own window: 25 s without a frame is still fine for one of 30 s.
    expect(r.cameras.find((c) => c.id === 'lane')).toMatchObject({ ok: true, stallWindowMs: 30_000 });
    expect(r.cameras.find((c) => c.id === 'yard')).toMatchObject({ ok: false, state: 'offline' });
  });
});
