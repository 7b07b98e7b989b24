import { describe, expect, it } from 'vitest';
import { cameraHealth, type HealthFacts } from './camera-health.js';
import { FrameRateMeter } from './frame-rate-meter.js';

const policy = { recoveryMs: 60_000, minRateShare: 0.5, rateSettleMs: 5000 };
const flowing: HealthFacts = { now: 100_000, running: true, flowingSince: 10_000, failedBefore: false, framesPerSecond: 5, configuredFps: 5 };

describe('camera health', () => {
  it('online when frames flow at about the configured rate with no trouble lately', () => {
    expect(cameraHealth(flowing, policy)).toBe('online');
    expect(cameraHealth({ ...flowing, framesPerSecond: 2.6 }, policy)).toBe('online');
  });

  it('degraded after a failed run, until frames have flowed again for the recovery period', () => {
    expect(cameraHealth({ ...flowing, failedBefore: true, flowingSince: 50_000 }, policy)).toBe('degraded');
    expect(cameraHealth({ ...flowing, failedBefore: true, flowingSince: 40_000 }, policy)).toBe('online');
  });

  it('degraded when the rate is well below the configured one, once it has had time to settle', () => {
    expect(cameraHealth({ ...flowing, framesPerSecond: 2 }, policy)).toBe('degraded');
    expect(cameraHealth({ ...flowing, framesPerSecond: 2, flowingSince: 98_000 }, policy)).toBe('online');
  });

  it('starting before the first frame, offline when stopped or failing', () => {
    expect(cameraHealth({ ...flowing, flowingSince: null }, policy)).toBe('starting');
    expect(cameraHealth({ ...flowing, flowingSince: null, failedBefore: true }, policy)).toBe('offline');
    expect(cameraHealth({ ...flowing, running: false }, policy)).toBe('offline');
  });
});

describe('frame rate meter', () => {
  it('measures over the window and the span actually covered', () => {
    const m = new FrameRateMeter(5000);
    expect(m.rate(0, 5)).toBe(0);
    for (let t = 0; t < 10_000; t += 200) m.add(t);
    expect(m.rate(10_000, 5)).toBeCloseTo(5, 0);
    // One frame so far: counted over one nominal interval, not over nothing.
    const fresh = new FrameRateMeter(5000);
    fresh.add(1000);
    expect(fresh.rate(1000, 5)).toBe(5);
    expect(m.rate(20_000, 5)).toBe(0);
  });
});
