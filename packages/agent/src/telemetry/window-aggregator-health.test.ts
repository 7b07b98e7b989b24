import { telemetryWindowSchema } from '@perch/shared';
import { describe, expect, it } from 'vitest';
import { WindowAggregator } from './window-aggregator.js';

describe('camera health in telemetry windows', () => {
  it('counts restarts and stalls per window, keeps the latest cause, and carries the state over', () => {
    const agg = new WindowAggregator(['front', 'back'], 1000);
    agg.switchModel({ name: 'm', version: '1', sha256: 'a'.repeat(64) }, 1000);
    agg.cameraState('front', 'online');
    agg.cameraIncident('front', 'stalled', 'no frame for 20 s', true);
    agg.cameraState('front', 'offline');
    agg.cameraRestarted('front');
    agg.cameraIncident('front', 'refused', 'rtsp://10.0.0.7/live: Connection refused', false);
    agg.cameraRestarted('front');
    agg.cameraState('front', 'degraded');
    const w = agg.close(2000);
    expect(w).not.toBeNull();
    expect(telemetryWindowSchema.safeParse({ deviceId: 'd1', seq: 0, ...w }).success).toBe(true);
    const front = w?.cameras.find((c) => c.cameraId === 'front');
    expect(front?.health).toEqual({ state: 'degraded', restarts: 2, stalls: 1, errorKind: 'refused', lastError: 'rtsp://10.0.0.7/live: Connection refused' });
    // A camera nobody supervises (no state reported) has no health section.
    expect(w?.cameras.find((c) => c.cameraId === 'back')?.health).toBeUndefined();

    const next = agg.close(3000)?.cameras.find((c) => c.cameraId === 'front');
    expect(next?.health).toEqual({ state: 'degraded', restarts: 0, stalls: 0 });
  });
});
